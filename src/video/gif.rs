//! Animated GIFs in and out through the `image` crate (no ffmpeg needed).

use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::sync::mpsc::SyncSender;
use std::time::Duration;

use image::codecs::gif::{GifDecoder, GifEncoder, Repeat};
use image::{AnimationDecoder, ImageDecoder};

use super::{ClipInfo, Frame};
use crate::{Error, Result};

fn bad(path: &Path, msg: impl Into<String>) -> Error {
    Error::Parse {
        what: path.display().to_string(),
        msg: msg.into(),
    }
}

/// An opened GIF whose frames are decoded by [`GifFrames::send_all`] on the reader's thread.
pub(super) struct GifFrames {
    path: std::path::PathBuf,
    decoder: GifDecoder<BufReader<File>>,
}

/// Opens a GIF and reads its size (checked against the pixel limit).
pub(super) fn open(path: &Path) -> Result<(ClipInfo, GifFrames)> {
    let file = File::open(path).map_err(|err| Error::Io {
        path: path.to_path_buf(),
        err,
    })?;
    let decoder = GifDecoder::new(BufReader::new(file))
        .map_err(|e| bad(path, format!("not a readable GIF: {e}")))?;
    let (width, height) = decoder.dimensions();
    let limit = crate::imaging::pixel_limit();
    if u64::from(width) * u64::from(height) > limit {
        return Err(crate::Error::ImageTooLarge {
            what: path.display().to_string(),
            width,
            height,
            limit,
        });
    }
    let info = ClipInfo {
        width,
        height,
        fps: None,
        frames: None,
        exact_frames: false,
        has_audio: false,
    };
    Ok((
        info,
        GifFrames {
            path: path.to_path_buf(),
            decoder,
        },
    ))
}

impl GifFrames {
    /// Decodes every frame (composited onto the canvas as it shows, alpha on white) into `tx`;
    /// stops when the receiver is gone or at the first error.
    pub(super) fn send_all(self, tx: SyncSender<Result<Frame>>) {
        let path = self.path;
        let mut any = false;
        for f in self.decoder.into_frames() {
            let frame = f
                .map_err(|e| bad(&path, format!("corrupt GIF frame: {e}")))
                .map(|f| {
                    let (num, den) = f.delay().numer_denom_ms();
                    let delay =
                        Duration::from_secs_f64(f64::from(num) / f64::from(den.max(1)) / 1e3);
                    Frame {
                        image: crate::imaging::to_rgb(&image::DynamicImage::ImageRgba8(
                            f.into_buffer(),
                        )),
                        delay: Some(delay),
                        name: None,
                    }
                });
            let stop = frame.is_err();
            any |= !stop;
            if tx.send(frame).is_err() || stop {
                return;
            }
        }
        if !any {
            let _ = tx.send(Err(bad(&path, "the GIF holds no frames")));
        }
    }
}

/// Writes an animated GIF that loops forever. The bytes collect in memory (GIFs are small) and
/// go to the file at [`Writer::finish`], so write errors are reported rather than lost in a
/// buffered writer's drop.
pub(super) struct Writer {
    encoder: GifEncoder<Shared>,
    bytes: Shared,
    path: std::path::PathBuf,
}

/// A byte buffer the encoder writes into and the writer reads back.
#[derive(Clone, Default)]
struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::other("poisoned"))?
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// GIF delays are in 10 ms units; browsers show shorter delays than 20 ms as 100 ms.
const MIN_DELAY: Duration = Duration::from_millis(20);
/// The delay of frames with none given (10 fps).
const DEFAULT_DELAY: Duration = Duration::from_millis(100);

impl Writer {
    pub(super) fn create(path: &Path) -> Result<Self> {
        let bytes = Shared::default();
        // Speed 10: the gif crate's recommended trade-off between palette quality and time.
        let mut encoder = GifEncoder::new_with_speed(bytes.clone(), 10);
        encoder
            .set_repeat(Repeat::Infinite)
            .map_err(|e| bad(path, format!("cannot write GIF: {e}")))?;
        Ok(Writer {
            encoder,
            bytes,
            path: path.to_path_buf(),
        })
    }

    pub(super) fn write_frame(
        &mut self,
        rgb: image::RgbImage,
        delay: Option<Duration>,
    ) -> Result<()> {
        let delay = delay.unwrap_or(DEFAULT_DELAY).max(MIN_DELAY);
        let rgba = image::DynamicImage::ImageRgb8(rgb).into_rgba8();
        let frame =
            image::Frame::from_parts(rgba, 0, 0, image::Delay::from_saturating_duration(delay));
        self.encoder
            .encode_frame(frame)
            .map_err(|e| bad(&self.path, format!("cannot write GIF: {e}")))
    }

    /// Ends the GIF (the encoder writes its trailer when dropped) and writes it to the file.
    pub(super) fn finish(self) -> Result<()> {
        let Writer {
            encoder,
            bytes,
            path,
        } = self;
        drop(encoder);
        let data = std::mem::take(&mut *bytes.0.lock().map_err(|_| bad(&path, "poisoned buffer"))?);
        let io = |err| Error::Io {
            path: path.clone(),
            err,
        };
        let mut f = File::create(&path).map_err(io)?;
        std::io::Write::write_all(&mut f, &data).map_err(io)?;
        f.sync_all().map_err(io)
    }
}
