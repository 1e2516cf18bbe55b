//! Video: clips in and out, stylized frame by frame with statistics kept over time.
//!
//! - [`VideoReader`] reads frames from a video file (through the system `ffmpeg`), an animated
//!   GIF (the `image` crate, feature `gif`) or a folder of images (natural sort order), each on
//!   its own thread so that decoding overlaps the network.
//! - [`VideoWriter`] writes them, on its own thread, to a video (ffmpeg: H.264 in yuv420p by
//!   default, the source's audio copied), a GIF or a folder of PNGs. A file is written under a
//!   temporary name and renamed when complete, so an interrupted run leaves nothing under the
//!   output's name.
//! - [`stylize_clip`] joins them with a [`FrameStylizer`]: `--temporal M` smooths every
//!   normalization layer's statistics over the frames, which removes the flicker that
//!   per-frame statistics cause (not the texture aliasing of strided layers; see the README).
//! - [`metrics`] measures the flicker of clips whose motion is known ([`synth`] makes such clips
//!   by panning and zooming a photo).

pub mod ffmpeg;
#[cfg(feature = "gif")]
mod gif;
pub mod metrics;
pub mod synth;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::JoinHandle;
use std::time::Duration;

use image::RgbImage;

use crate::imaging::{self, Rgb};
use crate::pipeline::FrameStylizer;
use crate::{Error, Result};

pub use ffmpeg::{EncodeOptions, DEFAULT_CODEC, DEFAULT_CRF};

/// Frames decoded or encoded ahead of the network: enough to keep the pipes busy, few enough
/// to bound memory (a 1280×720 frame is 11 MB as f32).
const QUEUE: usize = 3;

/// A frame rate as a fraction, e.g. 30000/1001.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fps {
    /// Numerator.
    pub num: u32,
    /// Denominator (> 0).
    pub den: u32,
}

impl Fps {
    /// Parses ffmpeg's `N/D` or `N` (0/0 and non-positive rates are `None`).
    pub fn parse(s: &str) -> Option<Fps> {
        let (n, d) = s.split_once('/').unwrap_or((s, "1"));
        let (num, den) = (n.trim().parse().ok()?, d.trim().parse().ok()?);
        (num > 0 && den > 0).then_some(Fps { num, den })
    }

    /// Frames per second as a number.
    pub fn as_f64(self) -> f64 {
        f64::from(self.num) / f64::from(self.den)
    }

    /// The rate whose frames last `delay` (GIF frame delays), at least 1 ms.
    pub fn from_delay(delay: Duration) -> Fps {
        let ms = delay.as_millis().clamp(1, 60_000) as u32;
        Fps { num: 1000, den: ms }
    }
}

impl std::fmt::Display for Fps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.num, self.den)
    }
}

/// What is known of a clip before its frames are read.
#[derive(Clone, Debug, PartialEq)]
pub struct ClipInfo {
    /// Frame width in pixels (as displayed: after rotation).
    pub width: u32,
    /// Frame height in pixels.
    pub height: u32,
    /// Frames per second, when the clip has a rate (videos; not GIFs or folders).
    pub fps: Option<Fps>,
    /// Frames in the clip: exact for folders and most MP4s, estimated from the duration
    /// otherwise ([`ClipInfo::exact_frames`]), unknown for GIFs.
    pub frames: Option<u64>,
    /// Whether `frames` is the container's own count (a shorter decode is then an error).
    pub exact_frames: bool,
    /// Whether the clip has an audio stream.
    pub has_audio: bool,
}

/// One frame of a clip.
#[derive(Clone, Debug)]
pub struct Frame {
    /// The pixels, RGB f32 in [0, 1], converted as [`imaging::load_rgb`] converts an image file
    /// (so a frame stylizes exactly as the same picture saved as PNG).
    pub image: Rgb,
    /// How long it shows (GIF frames), if the clip says.
    pub delay: Option<Duration>,
    /// The file it came from (folders of frames).
    pub name: Option<String>,
}

/// Where a clip comes from, chosen from a path by [`ClipKind::of`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClipKind {
    /// A video file, read and written through ffmpeg.
    Video,
    /// An animated GIF.
    Gif,
    /// A folder of frames (images in natural sort order; PNGs when written).
    Frames,
}

/// Extensions taken for video files (ffmpeg reads many more; these are what `stylize` treats as
/// a clip rather than a photo).
pub const VIDEO_EXTENSIONS: [&str; 12] = [
    "mp4", "m4v", "mov", "mkv", "webm", "avi", "mpg", "mpeg", "ts", "flv", "wmv", "ogv",
];

impl ClipKind {
    /// A folder is frames; `.gif` is a GIF; a [`VIDEO_EXTENSIONS`] name is a video; anything
    /// else is not a clip.
    pub fn of(path: &Path) -> Option<ClipKind> {
        if path.is_dir() {
            return Some(ClipKind::Frames);
        }
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        if ext == "gif" {
            Some(ClipKind::Gif)
        } else if VIDEO_EXTENSIONS.contains(&ext.as_str()) {
            Some(ClipKind::Video)
        } else {
            None
        }
    }
}

/// Reads a clip's frames in order on a thread of its own.
pub struct VideoReader {
    info: ClipInfo,
    rx: Option<Receiver<Result<Frame>>>,
    thread: Option<JoinHandle<()>>,
}

impl VideoReader {
    /// Opens a video file, GIF or folder of frames ([`ClipKind::of`]).
    pub fn open(path: &Path) -> Result<Self> {
        match ClipKind::of(path) {
            Some(ClipKind::Video) => Self::video(path),
            Some(ClipKind::Gif) => Self::gif(path),
            Some(ClipKind::Frames) => Self::frames(path),
            None => Err(Error::Parse {
                what: path.display().to_string(),
                msg: format!(
                    "not a clip: give a video ({}), a .gif or a folder of frames",
                    VIDEO_EXTENSIONS.join(", ")
                ),
            }),
        }
    }

    /// A video file through ffmpeg ([`ffmpeg::Decoder`]).
    pub fn video(path: &Path) -> Result<Self> {
        let mut dec = ffmpeg::Decoder::open(path)?;
        let info = dec.info().clone();
        Ok(Self::spawn(info, move |tx| loop {
            let frame = match dec.next_frame() {
                Ok(Some(rgb)) => Frame {
                    image: image::DynamicImage::ImageRgb8(rgb).to_rgb32f(),
                    delay: None,
                    name: None,
                },
                Ok(None) => return,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            if tx.send(Ok(frame)).is_err() {
                return;
            }
        }))
    }

    /// An animated GIF, frames composited as they show (alpha on white).
    #[cfg(feature = "gif")]
    pub fn gif(path: &Path) -> Result<Self> {
        let (info, frames) = gif::open(path)?;
        Ok(Self::spawn(info, move |tx| frames.send_all(tx)))
    }

    /// An animated GIF (this build has no `gif` feature).
    #[cfg(not(feature = "gif"))]
    pub fn gif(path: &Path) -> Result<Self> {
        Err(no_gif(path))
    }

    /// The images of a folder (PNG, JPEG, WebP; hidden files skipped) in natural sort order
    /// (`frame2` before `frame10`), one clip.
    pub fn frames(dir: &Path) -> Result<Self> {
        let files = frame_files(dir)?;
        let first = imaging::load_rgb(&files[0])?;
        let info = ClipInfo {
            width: first.width(),
            height: first.height(),
            fps: None,
            frames: Some(files.len() as u64),
            exact_frames: true,
            has_audio: false,
        };
        Ok(Self::spawn(info, move |tx| {
            for (i, p) in files.iter().enumerate() {
                let image = if i == 0 {
                    Ok(first.clone())
                } else {
                    imaging::load_rgb(p)
                };
                let frame = image.map(|image| Frame {
                    image,
                    delay: None,
                    name: p.file_name().map(|n| n.to_string_lossy().into_owned()),
                });
                let stop = frame.is_err();
                if tx.send(frame).is_err() || stop {
                    return;
                }
            }
        }))
    }

    fn spawn(
        info: ClipInfo,
        produce: impl FnOnce(SyncSender<Result<Frame>>) + Send + 'static,
    ) -> Self {
        let (tx, rx) = sync_channel(QUEUE);
        let thread = std::thread::spawn(move || produce(tx));
        VideoReader {
            info,
            rx: Some(rx),
            thread: Some(thread),
        }
    }

    /// The clip's facts.
    pub fn info(&self) -> &ClipInfo {
        &self.info
    }

    /// The next frame, `None` after the last (and after an error).
    pub fn next_frame(&mut self) -> Result<Option<Frame>> {
        let Some(rx) = &self.rx else {
            return Ok(None);
        };
        match rx.recv() {
            Ok(Ok(f)) => Ok(Some(f)),
            Ok(Err(e)) => {
                self.rx = None;
                Err(e)
            }
            Err(_) => {
                self.rx = None;
                Ok(None)
            }
        }
    }
}

impl Iterator for VideoReader {
    type Item = Result<Frame>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_frame().transpose()
    }
}

impl Drop for VideoReader {
    fn drop(&mut self) {
        // Closing the channel stops the producer at its next frame.
        self.rx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The image files of a folder of frames in natural sort order; an empty folder is an error.
pub fn frame_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = crate::pipeline::list_images(dir, false)?;
    alphanumeric_sort::sort_path_slice(&mut files);
    if files.is_empty() {
        return Err(Error::Parse {
            what: dir.display().to_string(),
            msg: "holds no frames (PNG, JPEG or WebP images)".into(),
        });
    }
    Ok(files)
}

#[cfg(not(feature = "gif"))]
fn no_gif(path: &Path) -> Error {
    Error::Parse {
        what: path.display().to_string(),
        msg: "GIF support is not built in (cargo feature `gif`)".into(),
    }
}

/// How [`VideoWriter`] writes a clip.
#[derive(Clone, Debug, PartialEq)]
pub struct WriteOptions {
    /// Video encoder settings (the rate when no frame says otherwise; GIFs and folders ignore
    /// the codec).
    pub encode: EncodeOptions,
    /// Replace an existing output (a folder's existing frames of the same names).
    pub overwrite: bool,
}

enum Sink {
    Video {
        tmp: tempfile::TempPath,
        encoder: Option<ffmpeg::Encoder>,
        opts: EncodeOptions,
    },
    #[cfg(feature = "gif")]
    Gif {
        tmp: tempfile::TempPath,
        encoder: gif::Writer,
    },
    Frames {
        dir: PathBuf,
        written: usize,
    },
}

/// Writes a clip's frames on a thread of its own; [`VideoWriter::finish`] completes the file.
/// Dropped unfinished, it removes what it wrote under a temporary name (a folder keeps the
/// frames it completed, each written whole).
pub struct VideoWriter {
    path: PathBuf,
    tx: Option<SyncSender<Outgoing>>,
    thread: Option<JoinHandle<Result<()>>>,
    abort: std::sync::Arc<AtomicBool>,
}

/// A frame on its way to the writer.
struct Outgoing {
    pixels: Pixels,
    delay: Option<Duration>,
    name: Option<String>,
}

/// A frame's pixels: 8-bit, or a (1, 3, H, W) tensor the writer thread quantizes (off the
/// network's thread).
enum Pixels {
    Rgb8(RgbImage),
    Tensor(candle::Tensor),
}

impl VideoWriter {
    /// Creates `path`: a video file (its extension picks ffmpeg's container), a `.gif`, or a
    /// folder of PNGs (`kind` [`ClipKind::Frames`]). A file output that exists is refused
    /// unless `overwrite`.
    pub fn create(path: &Path, kind: ClipKind, opts: WriteOptions) -> Result<Self> {
        let io = |err| Error::Io {
            path: path.to_path_buf(),
            err,
        };
        let sink = match kind {
            ClipKind::Frames => {
                if path.exists() && !path.is_dir() {
                    return Err(Error::Parse {
                        what: path.display().to_string(),
                        msg: "frames are written to a folder, and this is a file".into(),
                    });
                }
                std::fs::create_dir_all(path).map_err(io)?;
                Sink::Frames {
                    dir: path.to_path_buf(),
                    written: 0,
                }
            }
            ClipKind::Video | ClipKind::Gif => {
                if path.exists() && !opts.overwrite {
                    return Err(io(std::io::Error::new(
                        std::io::ErrorKind::AlreadyExists,
                        "already exists",
                    )));
                }
                let tmp = temp_beside(path)?;
                match kind {
                    #[cfg(feature = "gif")]
                    ClipKind::Gif => Sink::Gif {
                        encoder: gif::Writer::create(&tmp)?,
                        tmp,
                    },
                    #[cfg(not(feature = "gif"))]
                    ClipKind::Gif => return Err(no_gif(path)),
                    _ => Sink::Video {
                        tmp,
                        encoder: None,
                        opts: opts.encode.clone(),
                    },
                }
            }
        };
        let (tx, rx) = sync_channel::<Outgoing>(QUEUE);
        let abort = std::sync::Arc::new(AtomicBool::new(false));
        let (out, stop) = (path.to_path_buf(), abort.clone());
        let overwrite = opts.overwrite;
        let thread = std::thread::spawn(move || consume(sink, rx, &out, &stop, overwrite));
        Ok(VideoWriter {
            path: path.to_path_buf(),
            tx: Some(tx),
            thread: Some(thread),
            abort,
        })
    }

    /// Queues one frame. Every frame of a video must have the first frame's size.
    pub fn write_frame(
        &mut self,
        image: RgbImage,
        delay: Option<Duration>,
        name: Option<String>,
    ) -> Result<()> {
        self.send(Outgoing {
            pixels: Pixels::Rgb8(image),
            delay,
            name,
        })
    }

    /// Queues one frame given as a (1, 3, H, W) tensor in [0, 1] (on any device), quantized as
    /// [`imaging::to_rgb8`] does, on the writer's thread.
    pub fn write_tensor(
        &mut self,
        frame: candle::Tensor,
        delay: Option<Duration>,
        name: Option<String>,
    ) -> Result<()> {
        self.send(Outgoing {
            pixels: Pixels::Tensor(frame),
            delay,
            name,
        })
    }

    fn send(&mut self, frame: Outgoing) -> Result<()> {
        let sent = self.tx.as_ref().is_some_and(|tx| tx.send(frame).is_ok());
        if sent {
            return Ok(());
        }
        // The writer stopped: its error says why.
        self.tx = None;
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(Err(e))) => Err(e),
            _ => Err(Error::Parse {
                what: self.path.display().to_string(),
                msg: "the writer stopped".into(),
            }),
        }
    }

    /// Writes the rest and completes the output (renamed into place).
    pub fn finish(mut self) -> Result<()> {
        self.tx = None;
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(r)) => r,
            _ => Err(Error::Parse {
                what: self.path.display().to_string(),
                msg: "the writer thread panicked".into(),
            }),
        }
    }
}

impl Drop for VideoWriter {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.abort.store(true, Ordering::SeqCst);
            self.tx = None;
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }
}

/// A temporary file beside `path`, named like [`write_atomic`](crate::weights::write_atomic)'s
/// (so `remove_stale_temps` knows it) and keeping the extension (ffmpeg picks the container by
/// it).
fn temp_beside(path: &Path) -> Result<tempfile::TempPath> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let ext = path
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    let tmp = tempfile::Builder::new()
        .prefix(&crate::weights::temp_prefix(std::process::id()))
        .suffix(&format!(".tmp{ext}"))
        .tempfile_in(dir)
        .map_err(|err| Error::Io {
            path: path.to_path_buf(),
            err: std::io::Error::new(err.kind(), format!("cannot create a file beside it: {err}")),
        })?;
    Ok(tmp.into_temp_path())
}

/// Moves a completed temporary file into place as an ordinary (0644) file.
fn commit(tmp: tempfile::TempPath, path: &Path) -> Result<()> {
    let io = |err| Error::Io {
        path: path.to_path_buf(),
        err,
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644)).map_err(io)?;
    }
    tmp.persist(path).map_err(|e| io(e.error))
}

/// The writer thread: encodes every frame it receives, then completes the output, unless
/// `abort` was set (the temporary file is then dropped, which removes it).
fn consume(
    mut sink: Sink,
    rx: Receiver<Outgoing>,
    path: &Path,
    abort: &AtomicBool,
    overwrite: bool,
) -> Result<()> {
    for f in rx {
        let image = match f.pixels {
            Pixels::Rgb8(img) => img,
            Pixels::Tensor(t) => imaging::to_rgb8(&t)?,
        };
        match &mut sink {
            Sink::Video { tmp, encoder, opts } => {
                if encoder.is_none() {
                    let mut o = opts.clone();
                    if let Some(d) = f.delay {
                        o.fps = Fps::from_delay(d);
                    }
                    *encoder = Some(ffmpeg::Encoder::start(tmp, path, image.dimensions(), &o)?);
                }
                if let Some(e) = encoder {
                    e.write_frame(&image)?;
                }
            }
            #[cfg(feature = "gif")]
            Sink::Gif { encoder, .. } => encoder.write_frame(image, f.delay)?,
            Sink::Frames { dir, written } => {
                let name = match &f.name {
                    Some(n) => Path::new(n).with_extension("png"),
                    None => PathBuf::from(format!("frame_{:06}.png", *written + 1)),
                };
                let out = dir.join(name);
                if out.exists() && !overwrite {
                    return Err(Error::Io {
                        path: out,
                        err: std::io::Error::new(
                            std::io::ErrorKind::AlreadyExists,
                            "already exists",
                        ),
                    });
                }
                imaging::save(&image, &out, 95)?;
                *written += 1;
            }
        }
    }
    if abort.load(Ordering::SeqCst) {
        return Ok(());
    }
    match sink {
        Sink::Video { tmp, encoder, .. } => match encoder {
            Some(e) => {
                e.finish()?;
                commit(tmp, path)
            }
            None => Err(Error::Parse {
                what: path.display().to_string(),
                msg: "no frames to write".into(),
            }),
        },
        #[cfg(feature = "gif")]
        Sink::Gif { tmp, encoder } => {
            encoder.finish()?;
            commit(tmp, path)
        }
        Sink::Frames { .. } => Ok(()),
    }
}

/// What [`stylize_clip`] did.
#[derive(Clone, Debug, PartialEq)]
pub struct ClipSummary {
    /// Frames stylized and written.
    pub frames: u64,
    /// Scene cuts found (each restarted the temporal statistics).
    pub scene_cuts: u64,
    /// Output frame size.
    pub size: (u32, u32),
    /// Seconds from the first frame read to the output completed.
    pub seconds: f64,
}

/// Stylizes every frame of `reader` with `frames` and writes it to `writer`; decoding and
/// encoding run on their own threads meanwhile. `progress` is called after each frame with the
/// count so far; a set `cancel` stops at the next frame with an error (the output is then not
/// written).
///
/// Without temporal statistics the frames are independent: for the Magenta family on the CPU,
/// one frame per thread (up to 4) is rendered at once, each on a thread pool of its own
/// ([`frames_in_parallel`] says why; 1280×720 on 2 cores, 48 frames: medians of 4 whole runs
/// 5.35 s, against 5.99 s for one frame at a time on two threads). The results are the same:
/// every kernel reduces in a fixed order whatever the thread count. Otherwise, and with
/// temporal statistics, frames run in order on the shared pool.
pub fn stylize_clip(
    mut reader: VideoReader,
    mut writer: VideoWriter,
    frames: &mut FrameStylizer,
    progress: &mut dyn FnMut(u64),
    cancel: &AtomicBool,
) -> Result<ClipSummary> {
    let t0 = std::time::Instant::now();
    let (n, size) = if frames.is_temporal() || !frames_in_parallel(frames) {
        in_order(&mut reader, &mut writer, frames, progress, cancel)?
    } else {
        in_flight(&mut reader, &mut writer, frames, progress, cancel)?
    };
    writer.finish()?;
    Ok(ClipSummary {
        frames: n,
        scene_cuts: frames.scene_cuts(),
        size,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

/// Whether independent frames are rendered several at once: on CPU cores, for the Magenta
/// family. Its layers are thin (8–32 channels), so one frame on two threads spends a good part
/// of each op splitting it and waiting for the slower half (1024²: 0.163 s on 2 threads against
/// 0.277 s on 1, a 1.7× speed-up), and a frame per thread gains ~10 %. AdaIN's wide layers
/// scale (1.83×); two AdaIN frames at once only doubled the memory and ran 10 % slower (12
/// frames at 910×512: 13.4 s against 12.2 s). A GPU runs one frame at a time.
fn frames_in_parallel(frames: &FrameStylizer) -> bool {
    frames.device().is_cpu() && frames.family() == crate::pipeline::Family::Magenta
}

/// At most this many frames are rendered at once when they are independent (each holds its
/// activations: AdaIN at 4096×3072 peaks at ~2 GiB a frame).
const MAX_IN_FLIGHT: usize = 4;

fn interrupted() -> Error {
    Error::input("video", "interrupted")
}

fn dims(t: &candle::Tensor) -> Result<(u32, u32)> {
    let (_, _, h, w) = t.dims4()?;
    Ok((w as u32, h as u32))
}

/// One frame after another (temporal statistics carry from each frame to the next).
fn in_order(
    reader: &mut VideoReader,
    writer: &mut VideoWriter,
    frames: &mut FrameStylizer,
    progress: &mut dyn FnMut(u64),
    cancel: &AtomicBool,
) -> Result<(u64, (u32, u32))> {
    let (mut n, mut size) = (0, (0, 0));
    while let Some(f) = reader.next_frame()? {
        if cancel.load(Ordering::SeqCst) {
            return Err(interrupted());
        }
        // Quantized on the writer's thread, while the network runs the next frame.
        let out = frames.next_frame_tensor(f.image)?;
        size = dims(&out)?;
        writer.write_tensor(out, f.delay, f.name)?;
        n += 1;
        progress(n);
    }
    Ok((n, size))
}

/// Several frames at once, each on a pool of its own share of the threads (2 threads: two
/// frames of one thread each), written in their order.
fn in_flight(
    reader: &mut VideoReader,
    writer: &mut VideoWriter,
    frames: &FrameStylizer,
    progress: &mut dyn FnMut(u64),
    cancel: &AtomicBool,
) -> Result<(u64, (u32, u32))> {
    let threads = crate::ops::shared::threads();
    let workers = threads.min(MAX_IN_FLIGHT);
    let threads_each = threads / workers;
    type Done = (
        u64,
        Result<candle::Tensor>,
        Option<Duration>,
        Option<String>,
    );
    // The reader and the number of the next frame it gives, taken together.
    let jobs = std::sync::Mutex::new((reader, 0u64));
    let failed = AtomicBool::new(false);
    let (done_tx, done_rx) = sync_channel::<Done>(workers);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            let done_tx = done_tx.clone();
            let (jobs, failed) = (&jobs, &failed);
            scope.spawn(move || {
                // Its own pool, so each frame's ops split over this worker's share of threads
                // only (the shared pool if one cannot be built).
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads_each)
                    .build()
                    .ok();
                loop {
                    if failed.load(Ordering::SeqCst) || cancel.load(Ordering::SeqCst) {
                        return;
                    }
                    let (i, frame) = {
                        let Ok(mut guard) = jobs.lock() else { return };
                        let (reader, next) = &mut *guard;
                        match reader.next_frame() {
                            Ok(Some(f)) => {
                                *next += 1;
                                (*next - 1, f)
                            }
                            Ok(None) => return,
                            Err(e) => {
                                failed.store(true, Ordering::SeqCst);
                                let _ = done_tx.send((u64::MAX, Err(e), None, None));
                                return;
                            }
                        }
                    };
                    let out = match &pool {
                        Some(pool) => pool.install(|| frames.render_independent(frame.image)),
                        None => frames.render_independent(frame.image),
                    };
                    if out.is_err() {
                        failed.store(true, Ordering::SeqCst);
                    }
                    if done_tx.send((i, out, frame.delay, frame.name)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(done_tx);
        // Reorder and write on this thread; the first error stops the workers.
        let mut pending = std::collections::BTreeMap::new();
        let (mut n, mut size) = (0u64, (0, 0));
        let mut first_err = None;
        for (i, out, delay, name) in done_rx {
            match out {
                Err(e) => {
                    failed.store(true, Ordering::SeqCst);
                    first_err.get_or_insert(e);
                }
                Ok(t) if first_err.is_none() => {
                    pending.insert(i, (t, delay, name));
                    while let Some((t, delay, name)) = pending.remove(&n) {
                        size = dims(&t)?;
                        if let Err(e) = writer.write_tensor(t, delay, name) {
                            failed.store(true, Ordering::SeqCst);
                            first_err.get_or_insert(e);
                            break;
                        }
                        n += 1;
                        progress(n);
                    }
                }
                Ok(_) => {}
            }
        }
        if let Some(e) = first_err {
            return Err(e);
        }
        if cancel.load(Ordering::SeqCst) {
            return Err(interrupted());
        }
        Ok((n, size))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_and_print() {
        assert_eq!(Fps::parse("24/1"), Some(Fps { num: 24, den: 1 }));
        assert_eq!(Fps::parse("25"), Some(Fps { num: 25, den: 1 }));
        assert_eq!(Fps::parse("0/0"), None);
        assert_eq!(Fps::parse("x"), None);
        assert_eq!(
            Fps {
                num: 30000,
                den: 1001
            }
            .to_string(),
            "30000/1001"
        );
        assert_eq!(Fps::from_delay(Duration::from_millis(40)).as_f64(), 25.0);
    }

    #[test]
    fn clip_kinds_come_from_extensions() {
        assert_eq!(ClipKind::of(Path::new("a.MP4")), Some(ClipKind::Video));
        assert_eq!(ClipKind::of(Path::new("a.gif")), Some(ClipKind::Gif));
        assert_eq!(ClipKind::of(Path::new("a.png")), None);
        assert_eq!(ClipKind::of(Path::new(".")), Some(ClipKind::Frames));
    }
}
