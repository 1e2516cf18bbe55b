//! `normstyle video-metrics IN OUT --motion M.json`: the flicker of a stylized clip whose
//! motion is known, as one JSON object on stdout.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use normstyle::video::metrics::{FlickerMeter, Motion};
use normstyle::video::VideoReader;

/// Arguments of `normstyle video-metrics`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Prints {\"frames\", \"warping_error\", \"frame_diff_out\", \"frame_diff_in\"}, \
RGB in [0, 1] units. The motion file maps each pixel of frame t to frame t - 1:
  {\"width\": W, \"height\": H, \"to_previous\": [[a, b, c, d, e, f], ...]}
  (x, y) of frame t showed (a*x + b*y + c, d*x + e*y + f) of frame t - 1.

Example:
  normstyle video-metrics pan.mp4 pan_stylized.mp4 --motion pan.motion.json"
)]
pub struct Args {
    /// The input clip (a video, a .gif or a folder of frames).
    #[arg(value_hint = clap::ValueHint::AnyPath)]
    input: PathBuf,
    /// The stylized clip, with the same number of frames.
    #[arg(value_hint = clap::ValueHint::AnyPath)]
    output: PathBuf,
    /// The motion of the input (JSON; see below).
    #[arg(long, value_hint = clap::ValueHint::FilePath)]
    motion: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let motion = Motion::load(&args.motion)?;
    let input = VideoReader::open(&args.input)?;
    let output = VideoReader::open(&args.output)?;
    let mut meter = FlickerMeter::new(&motion);
    let (mut a, mut b) = (input, output);
    loop {
        match (a.next_frame()?, b.next_frame()?) {
            (Some(i), Some(o)) => meter.push(i.image, o.image).with_context(|| {
                format!("{} and {}", args.input.display(), args.output.display())
            })?,
            (None, None) => break,
            (i, _) => {
                let n = meter.finish().frames + 1;
                let (short, long) = if i.is_none() {
                    (&args.input, &args.output)
                } else {
                    (&args.output, &args.input)
                };
                bail!(
                    "{} has fewer frames than {} (it ends before frame {n})",
                    short.display(),
                    long.display()
                );
            }
        }
    }
    let r = meter.finish();
    if r.frames < 2 {
        bail!(
            "{}: flicker needs at least two frames",
            args.input.display()
        );
    }
    println!("{}", serde_json::to_string(&r)?);
    Ok(ExitCode::SUCCESS)
}
