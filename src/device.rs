//! The one place a [`Device`] is created (`--device cpu|cuda|metal`, default cpu). An
//! unavailable device is an error, never a silent fallback to the CPU.

use candle::Device;

use crate::{Error, Result};

/// Creates the device named on the command line.
pub fn device(name: &str) -> Result<Device> {
    let err = |msg: &str| Error::Parse {
        what: "device".into(),
        msg: msg.into(),
    };
    match name {
        "cpu" => Ok(Device::Cpu),
        "cuda" => {
            if !candle::utils::cuda_is_available() {
                return Err(err(
                    "cuda: this build has no CUDA support (rebuild with `--features cuda`)",
                ));
            }
            Device::new_cuda(0).map_err(|e| err(&format!("cuda: no usable GPU ({e})")))
        }
        "metal" => {
            if !candle::utils::metal_is_available() {
                return Err(err(
                    "metal: this build has no Metal support (rebuild with `--features metal`)",
                ));
            }
            Device::new_metal(0).map_err(|e| err(&format!("metal: no usable GPU ({e})")))
        }
        other => Err(err(&format!(
            "unknown device `{other}` (expected cpu, cuda or metal)"
        ))),
    }
}
