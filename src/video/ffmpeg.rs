//! Clips in and out through the system `ffmpeg` (Debian's package): `ffprobe` reads the stream
//! facts, `ffmpeg` decodes to raw RGB on a pipe and encodes raw RGB from a pipe.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::thread::JoinHandle;

use super::{ClipInfo, Fps};
use crate::{Error, Result};

/// How to install the programs, for the error a missing one gets.
const INSTALL_HINT: &str =
    "video needs the ffmpeg program (Debian/Ubuntu: apt-get install ffmpeg; macOS: brew install ffmpeg)";

/// A command for `program` (`ffmpeg` or `ffprobe`; `NORMSTYLE_FFMPEG` names another ffmpeg,
/// whose folder then also holds ffprobe).
fn command(program: &'static str) -> Command {
    match std::env::var_os("NORMSTYLE_FFMPEG") {
        Some(ffmpeg) if !ffmpeg.is_empty() => {
            let ffmpeg = PathBuf::from(ffmpeg);
            if program == "ffmpeg" {
                Command::new(ffmpeg)
            } else {
                Command::new(ffmpeg.with_file_name(program))
            }
        }
        _ => Command::new(program),
    }
}

/// Starts `cmd`, turning "not found" into the install hint.
fn spawn(program: &'static str, cmd: &mut Command) -> Result<Child> {
    cmd.spawn().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::Tool {
                program,
                msg: format!("not found; {INSTALL_HINT}"),
            }
        } else {
            Error::Tool {
                program,
                msg: format!("cannot start: {e}"),
            }
        }
    })
}

/// ffmpeg reads `file:` URLs as plain paths, so a name with `:` or a leading `-` is not taken
/// for a protocol or an option.
fn file_url(path: &Path) -> std::ffi::OsString {
    let mut s = std::ffi::OsString::from("file:");
    s.push(path.as_os_str());
    s
}

fn bad(path: &Path, msg: impl Into<String>) -> Error {
    Error::Parse {
        what: path.display().to_string(),
        msg: msg.into(),
    }
}

/// What ffmpeg said, as one line: its last two distinct messages (the cause usually comes
/// just before the summary), without the `[demuxer @ 0x…]` prefixes and the file name.
fn last_line(stderr: &str, path: &Path) -> String {
    let name = format!("{}: ", path.display());
    let clean = |line: &str| -> String {
        let line = match line.find("] ") {
            Some(i) if line.starts_with('[') => &line[i + 2..],
            _ => line,
        };
        line.trim_start_matches("file:")
            .trim_start_matches(name.as_str())
            .trim()
            .to_string()
    };
    let mut said: Vec<String> = Vec::new();
    for line in stderr.lines().rev().map(clean).filter(|l| !l.is_empty()) {
        if !said.contains(&line) {
            said.push(line);
        }
        if said.len() == 2 {
            break;
        }
    }
    said.reverse();
    said.join("; ")
}

/// Reads the stream facts of a clip with `ffprobe`: the first video stream's size (after the
/// rotation players apply), frame rate and frame count, and whether there is audio.
pub fn probe(path: &Path) -> Result<ClipInfo> {
    if !path.is_file() {
        let msg = if path.exists() {
            "not a file"
        } else {
            "no such file"
        };
        return Err(bad(path, msg));
    }
    let out = spawn(
        "ffprobe",
        command("ffprobe")
            .args([
                "-v",
                "error",
                "-print_format",
                "json",
                "-show_streams",
                "-show_format",
                "-i",
            ])
            .arg(file_url(path))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    )?
    .wait_with_output()
    .map_err(|e| Error::Tool {
        program: "ffprobe",
        msg: e.to_string(),
    })?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(bad(
            path,
            format!("not a readable video ({})", last_line(&stderr, path)),
        ));
    }
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| bad(path, format!("ffprobe printed no JSON: {e}")))?;
    parse_probe(&doc).map_err(|msg| bad(path, msg))
}

/// [`probe`]'s reading of ffprobe's JSON (`-show_streams -show_format`).
fn parse_probe(doc: &serde_json::Value) -> std::result::Result<ClipInfo, String> {
    let streams = doc["streams"].as_array().cloned().unwrap_or_default();
    let kind = |s: &serde_json::Value| s["codec_type"].as_str().unwrap_or("").to_string();
    // Cover art is a video stream of one picture; it is not the clip.
    let video = streams.iter().find(|s| {
        kind(s) == "video" && s["disposition"]["attached_pic"].as_i64().unwrap_or(0) == 0
    });
    let has_audio = streams.iter().any(|s| kind(s) == "audio");
    let Some(v) = video else {
        return Err(if streams.is_empty() {
            "holds no streams (an empty clip?)".into()
        } else if has_audio {
            "has no video stream (audio only)".into()
        } else {
            "has no video stream".into()
        });
    };
    let dim = |k: &str| v[k].as_u64().filter(|&n| n > 0 && n <= 1 << 16);
    let (Some(w), Some(h)) = (dim("width"), dim("height")) else {
        return Err("the video stream has no valid size".into());
    };
    // Players (and ffmpeg's decoder) apply the display matrix: ±90° swaps the sides.
    let rotation = v["side_data_list"]
        .as_array()
        .and_then(|l| l.iter().find_map(|d| d["rotation"].as_f64()))
        .or_else(|| v["tags"]["rotate"].as_str().and_then(|r| r.parse().ok()))
        .unwrap_or(0.0);
    let quarter = (rotation / 90.0).round().rem_euclid(2.0) == 1.0;
    let (w, h) = if quarter { (h, w) } else { (w, h) };
    let rate = |k: &str| v[k].as_str().and_then(Fps::parse);
    let fps = rate("avg_frame_rate").or_else(|| rate("r_frame_rate"));
    let frames = v["nb_frames"]
        .as_str()
        .and_then(|n| n.parse::<u64>().ok())
        .filter(|&n| n > 0);
    let duration = v["duration"]
        .as_str()
        .or_else(|| doc["format"]["duration"].as_str())
        .and_then(|d| d.parse::<f64>().ok());
    let estimate = match (frames, fps, duration) {
        (Some(n), _, _) => Some(n),
        (None, Some(f), Some(d)) if d > 0.0 => Some((d * f.as_f64()).round() as u64),
        _ => None,
    };
    Ok(ClipInfo {
        width: w as u32,
        height: h as u32,
        fps,
        frames: estimate,
        exact_frames: frames.is_some(),
        has_audio,
    })
}

/// Collects a child's stderr on a thread (a full pipe would stall it).
fn collect(stderr: Option<ChildStderr>) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut e) = stderr {
            let _ = e.read_to_string(&mut s);
        }
        s
    })
}

/// A running `ffmpeg` that decodes a clip's first video stream to raw RGB frames.
pub struct Decoder {
    path: PathBuf,
    info: ClipInfo,
    child: Child,
    stderr: Option<JoinHandle<String>>,
    frame_bytes: usize,
    decoded: u64,
}

impl Decoder {
    /// Probes `path` and starts decoding it: every frame once, in order, as the stream holds
    /// them (no frame rate conversion).
    pub fn open(path: &Path) -> Result<Self> {
        let info = probe(path)?;
        let mut child = spawn(
            "ffmpeg",
            command("ffmpeg")
                .args(["-v", "error", "-nostdin", "-i"])
                .arg(file_url(path))
                .args([
                    "-map",
                    "0:v:0",
                    "-fps_mode",
                    "passthrough",
                    "-f",
                    "rawvideo",
                ])
                .args(["-pix_fmt", "rgb24", "pipe:1"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        )?;
        let stderr = Some(collect(child.stderr.take()));
        let frame_bytes = info.width as usize * info.height as usize * 3;
        Ok(Decoder {
            path: path.to_path_buf(),
            info,
            child,
            stderr,
            frame_bytes,
            decoded: 0,
        })
    }

    /// The clip's facts.
    pub fn info(&self) -> &ClipInfo {
        &self.info
    }

    /// The next frame as 8-bit RGB, `None` after the last. A clip that ends early (truncated),
    /// holds no frame, or that ffmpeg reports as corrupt is an error naming the file.
    pub fn next_frame(&mut self) -> Result<Option<image::RgbImage>> {
        let mut buf = vec![0u8; self.frame_bytes];
        let Some(stdout) = self.child.stdout.as_mut() else {
            return Ok(None);
        };
        let mut filled = 0;
        while filled < buf.len() {
            match stdout.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(bad(&self.path, format!("reading frames from ffmpeg: {e}"))),
            }
        }
        if filled == buf.len() {
            self.decoded += 1;
            let (w, h) = (self.info.width, self.info.height);
            return image::RgbImage::from_raw(w, h, buf)
                .map(Some)
                .ok_or_else(|| bad(&self.path, "frame buffer size mismatch"));
        }
        self.child.stdout = None;
        self.finish(filled)?;
        Ok(None)
    }

    /// Waits for ffmpeg at the end of the stream and checks that the clip was whole.
    fn finish(&mut self, partial: usize) -> Result<()> {
        let status = self.child.wait().map_err(|e| Error::Tool {
            program: "ffmpeg",
            msg: e.to_string(),
        })?;
        let stderr = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        let why = last_line(&stderr, &self.path);
        let corrupt = [
            "partial file",
            "Invalid data",
            "corrupt",
            "Error while decoding",
        ]
        .iter()
        .any(|m| stderr.contains(m));
        if !status.success() {
            return Err(bad(
                &self.path,
                format!("truncated or corrupt: ffmpeg could not decode it ({why})"),
            ));
        }
        if partial > 0 {
            return Err(bad(&self.path, "truncated: the last frame is incomplete"));
        }
        if self.decoded == 0 {
            return Err(bad(&self.path, "the video stream holds no frames"));
        }
        if let Some(n) = self.info.frames.filter(|_| self.info.exact_frames) {
            if self.decoded < n {
                return Err(bad(
                    &self.path,
                    format!(
                        "truncated or corrupt: {} of its {n} frames decode{}",
                        self.decoded,
                        if why.is_empty() {
                            String::new()
                        } else {
                            format!(" ({why})")
                        }
                    ),
                ));
            }
        }
        if corrupt {
            return Err(bad(&self.path, format!("corrupt video ({why})")));
        }
        Ok(())
    }
}

impl Drop for Decoder {
    fn drop(&mut self) {
        if self.child.stdout.is_some() {
            // Stopped early (an error downstream, Ctrl-C): don't wait for the whole clip.
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Settings of the encoded video.
#[derive(Clone, Debug, PartialEq)]
pub struct EncodeOptions {
    /// The ffmpeg encoder (`-c:v`), default `libx264`.
    pub codec: String,
    /// Constant rate factor (`-crf`; lower is better quality), default 18.
    pub crf: u8,
    /// Frames per second of the output.
    pub fps: Fps,
    /// A clip whose audio streams are copied into the output (`-c:a copy`).
    pub audio_from: Option<PathBuf>,
}

impl EncodeOptions {
    /// H.264 at CRF 18, yuv420p, at `fps`, without audio.
    pub fn new(fps: Fps) -> Self {
        EncodeOptions {
            codec: DEFAULT_CODEC.into(),
            crf: DEFAULT_CRF,
            fps,
            audio_from: None,
        }
    }
}

/// The default encoder: H.264, which common players play.
pub const DEFAULT_CODEC: &str = "libx264";
/// The default constant rate factor: visually lossless for H.264.
pub const DEFAULT_CRF: u8 = 18;

/// Whether `codec` is written as 4:2:0 (what players expect of these codecs), which needs even
/// sides.
fn yuv420(codec: &str) -> bool {
    let c = codec.to_ascii_lowercase();
    c != "libx264rgb"
        && [
            "libx264",
            "libx265",
            "libvpx",
            "libaom",
            "libsvtav1",
            "librav1e",
            "mpeg4",
            "libxvid",
            "libopenh264",
            "h264",
            "hevc",
            "av1",
        ]
        .iter()
        .any(|p| c.starts_with(p))
}

/// The (width, height) an encoded frame of `(w, h)` has: 4:2:0 codecs lose an odd last column
/// or row.
pub fn encoded_size(codec: &str, (w, h): (u32, u32)) -> (u32, u32) {
    if yuv420(codec) {
        ((w & !1).max(2), (h & !1).max(2))
    } else {
        (w, h)
    }
}

/// A running `ffmpeg` that encodes raw RGB frames of one size into a file (an extension ffmpeg
/// knows picks the container).
pub struct Encoder {
    child: Child,
    stderr: Option<JoinHandle<String>>,
    size: (u32, u32),
    /// The name errors give (the output's, when ffmpeg writes a temporary file).
    out: PathBuf,
}

impl Encoder {
    /// Starts ffmpeg writing frames of `(width, height)` to `file`; errors name `shown_as`.
    pub fn start(
        file: &Path,
        shown_as: &Path,
        (width, height): (u32, u32),
        opts: &EncodeOptions,
    ) -> Result<Self> {
        let out = shown_as;
        if width < 2 || height < 2 {
            return Err(bad(
                out,
                format!("{width}×{height} frames are too small to encode"),
            ));
        }
        let mut cmd = command("ffmpeg");
        cmd.args([
            "-v", "error", "-nostdin", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
        ])
        .args(["-s", &format!("{width}x{height}")])
        .args(["-framerate", &opts.fps.to_string(), "-i", "pipe:0"]);
        if let Some(a) = &opts.audio_from {
            cmd.arg("-i")
                .arg(file_url(a))
                .args(["-map", "0:v:0", "-map", "1:a?", "-c:a", "copy"]);
        }
        cmd.args(["-c:v", &opts.codec, "-crf", &opts.crf.to_string()]);
        if ["libx264", "libx265"].contains(&opts.codec.to_ascii_lowercase().as_str()) {
            // The network, not the encoder, should have the cores. Beside Magenta at 1280×720
            // on 2 cores, whole runs took (medians of 4): medium slowest, veryfast 6.06 s,
            // faster 6.05 s, superfast 5.58 s; superfast's files are ~1.8× veryfast's at the
            // same CRF (a higher --crf makes them smaller).
            cmd.args(["-preset", "superfast"]);
        }
        if opts.codec.to_ascii_lowercase().starts_with("libvpx") {
            // Constant quality in libvpx needs a zero target bit rate.
            cmd.args(["-b:v", "0"]);
        }
        if yuv420(&opts.codec) {
            cmd.args(["-pix_fmt", "yuv420p"]);
            if width % 2 == 1 || height % 2 == 1 {
                let (w, h) = encoded_size(&opts.codec, (width, height));
                cmd.args(["-vf", &format!("crop={w}:{h}:0:0")]);
            }
        }
        cmd.arg(file_url(file))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = spawn("ffmpeg", &mut cmd)?;
        let stderr = Some(collect(child.stderr.take()));
        Ok(Encoder {
            child,
            stderr,
            size: (width, height),
            out: out.to_path_buf(),
        })
    }

    /// Sends one frame; it must have the size the encoder was started with.
    pub fn write_frame(&mut self, frame: &image::RgbImage) -> Result<()> {
        if frame.dimensions() != self.size {
            return Err(bad(
                &self.out,
                format!(
                    "a {}×{} frame in a {}×{} video (every frame of a clip must have one size)",
                    frame.width(),
                    frame.height(),
                    self.size.0,
                    self.size.1
                ),
            ));
        }
        let Some(stdin) = self.child.stdin.as_mut() else {
            return Err(bad(&self.out, "the encoder was already finished"));
        };
        if stdin.write_all(frame.as_raw()).is_err() {
            // ffmpeg quit (a bad codec, a full disk): its own message says why.
            self.child.stdin = None;
            return Err(self.failure());
        }
        Ok(())
    }

    /// Closes the input and waits for ffmpeg to write the file.
    pub fn finish(mut self) -> Result<()> {
        self.child.stdin = None;
        let status = self.child.wait().map_err(|e| Error::Tool {
            program: "ffmpeg",
            msg: e.to_string(),
        })?;
        if !status.success() {
            return Err(self.failure());
        }
        Ok(())
    }

    fn failure(&mut self) -> Error {
        let _ = self.child.wait();
        let stderr = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        bad(
            &self.out,
            format!(
                "ffmpeg could not encode it ({})",
                last_line(&stderr, &self.out)
            ),
        )
    }
}

impl Drop for Encoder {
    fn drop(&mut self) {
        if self.child.stdin.is_some() {
            // Abandoned (an error, Ctrl-C): the temporary file it wrote is removed by its owner.
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_json_is_read() {
        let doc = serde_json::json!({
            "streams": [
                {"codec_type": "video", "width": 1920, "height": 1080, "nb_frames": "48",
                 "avg_frame_rate": "30000/1001", "r_frame_rate": "30000/1001",
                 "side_data_list": [{"rotation": -90}]},
                {"codec_type": "audio"}
            ],
            "format": {"duration": "1.6"}
        });
        let info = parse_probe(&doc).unwrap();
        assert_eq!((info.width, info.height), (1080, 1920));
        assert_eq!(
            info.fps,
            Some(Fps {
                num: 30000,
                den: 1001
            })
        );
        assert_eq!(info.frames, Some(48));
        assert!(info.has_audio && info.exact_frames);
        let audio = serde_json::json!({"streams": [{"codec_type": "audio"}]});
        assert!(parse_probe(&audio).unwrap_err().contains("no video stream"));
        let empty = serde_json::json!({"streams": []});
        assert!(parse_probe(&empty).unwrap_err().contains("no streams"));
        // No frame count: estimated from the duration.
        let mkv = serde_json::json!({"streams": [{"codec_type": "video", "width": 4,
            "height": 4, "avg_frame_rate": "25/1"}], "format": {"duration": "2.0"}});
        let info = parse_probe(&mkv).unwrap();
        assert_eq!((info.frames, info.exact_frames), (Some(50), false));
    }

    #[test]
    fn odd_sides_lose_a_pixel_in_yuv420() {
        assert_eq!(encoded_size("libx264", (321, 180)), (320, 180));
        assert_eq!(encoded_size("libx264", (320, 181)), (320, 180));
        assert_eq!(encoded_size("ffv1", (321, 181)), (321, 181));
        assert_eq!(encoded_size("libx264rgb", (321, 181)), (321, 181));
    }

    #[test]
    fn ffmpeg_lines_lose_their_prefixes() {
        let p = Path::new("clip.mp4");
        let s = "[mov,mp4 @ 0x55] moov atom not found\nclip.mp4: Invalid data found when processing input\n";
        assert_eq!(
            last_line(s, p),
            "moov atom not found; Invalid data found when processing input"
        );
        assert_eq!(last_line("[h264 @ 0x1] bad\n", p), "bad");
    }
}
