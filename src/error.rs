//! The library's error type: every fallible function in `normstyle` returns [`Result`].

use std::path::PathBuf;

/// Errors from the normstyle library. Messages are one line and name the thing that was wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A layer or model was configured with impossible hyper-parameters.
    #[error("{layer}: {msg}")]
    Config {
        /// Which layer or component rejected the configuration, e.g. `GroupNorm`.
        layer: &'static str,
        /// What was wrong, with the expected and found values.
        msg: String,
    },
    /// A tensor passed to `forward` (or a similar call) has the wrong rank, shape or dtype.
    #[error("{layer}: {msg}")]
    Input {
        /// Which layer or function rejected the input.
        layer: &'static str,
        /// What was wrong, with the expected and found values.
        msg: String,
    },
    /// A checkpoint lacks a tensor the model needs.
    #[error("missing tensor `{key}`")]
    MissingTensor {
        /// The full key, e.g. `encoder.0.weight`.
        key: String,
    },
    /// A checkpoint tensor has the wrong shape.
    #[error("tensor `{key}`: expected shape {expected:?}, found {found:?}")]
    TensorShape {
        /// The full key.
        key: String,
        /// The shape the model needs.
        expected: Vec<usize>,
        /// The shape in the file.
        found: Vec<usize>,
    },
    /// A value given on the command line or in a config could not be parsed.
    #[error("{what}: {msg}")]
    Parse {
        /// The thing being parsed, e.g. `--norm`.
        what: String,
        /// Why it was rejected.
        msg: String,
    },
    /// A file could not be read or written: the message names the file, the OS error is the
    /// `source` (printed by a chain, e.g. anyhow's `{:#}`).
    #[error("{}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        err: std::io::Error,
    },
    /// An error about the contents of a file (a checkpoint tensor of the wrong shape, a corrupt
    /// stream), with the file named.
    #[error("{}: {inner}", path.display())]
    InFile {
        /// The file.
        path: PathBuf,
        /// What was wrong in it.
        inner: Box<Error>,
    },
    /// An image is too small for the model (AdaIN's encoder pools three times).
    #[error("{width}×{height} is too small for AdaIN (each side ≥ {min} pixels after resizing)")]
    TooSmall {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
        /// The smallest side the model takes.
        min: u32,
    },
    /// An image has more pixels than the limit (`imaging::set_pixel_limit`), checked before it
    /// is decoded.
    #[error("{what}: {width}×{height} exceeds the limit of {limit} pixels")]
    ImageTooLarge {
        /// The file.
        what: String,
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
        /// The limit.
        limit: u64,
    },
    /// A download from (or lookup in) the Hugging Face Hub failed.
    #[error("{repo}: {msg}")]
    Hub {
        /// The repository (`OWNER/NAME@REVISION`).
        repo: String,
        /// What went wrong and what to do.
        msg: String,
    },
    /// An external program (ffmpeg, ffprobe) is missing or failed to run.
    #[error("{program}: {msg}")]
    Tool {
        /// The program.
        program: &'static str,
        /// What went wrong and what to do.
        msg: String,
    },
    /// Training stopped: a loss turned non-finite (the weights are those before that step).
    #[error("step {step}: the loss is not finite ({msg}); lower the learning rate")]
    Diverged {
        /// The step whose loss was not finite (1-based).
        step: u64,
        /// The losses of that step.
        msg: String,
    },
    /// An error from a tensor operation in Candle.
    #[error(transparent)]
    Candle(#[from] candle::Error),
}

/// For `candle::Module` implementations: Candle's own errors pass through unchanged, the
/// crate's are wrapped (their message kept).
impl From<Error> for candle::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Candle(c) => c,
            other => candle::Error::wrap(other),
        }
    }
}

/// `Result` with the library's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// A [`Error::Config`] error of `layer`.
    pub fn config(layer: &'static str, msg: impl Into<String>) -> Self {
        Error::Config {
            layer,
            msg: msg.into(),
        }
    }

    /// Names `path` in the message, unless the error already names a file.
    pub fn in_file(self, path: &std::path::Path) -> Self {
        match self {
            Error::Io { .. } | Error::InFile { .. } => self,
            // Parse errors name their stream (the path already).
            Error::Parse { .. } => self,
            other => Error::InFile {
                path: path.to_path_buf(),
                inner: Box::new(other),
            },
        }
    }

    /// A [`Error::Input`] error of `layer`.
    pub fn input(layer: &'static str, msg: impl Into<String>) -> Self {
        Error::Input {
            layer,
            msg: msg.into(),
        }
    }
}
