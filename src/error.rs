//! The library's error type: every fallible function in `normstyle` returns [`Result`].

use std::path::PathBuf;

/// Errors from the normstyle library. Messages are one line and name the thing that was wrong.
#[derive(Debug, thiserror::Error)]
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
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// An error from a tensor operation in Candle.
    #[error(transparent)]
    Candle(#[from] candle::Error),
}

/// `Result` with the library's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn config(layer: &'static str, msg: impl Into<String>) -> Self {
        Error::Config {
            layer,
            msg: msg.into(),
        }
    }

    pub(crate) fn input(layer: &'static str, msg: impl Into<String>) -> Self {
        Error::Input {
            layer,
            msg: msg.into(),
        }
    }
}
