//! The zip `.pth` reader (PyTorch ≥ 1.6): any bytes starting like a zip archive.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut bytes = b"PK\x03\x04".to_vec();
    bytes.extend_from_slice(data);
    let _ = normstyle::weights::TensorMap::from_bytes(&bytes, "fuzz.pth", &candle::Device::Cpu);
});
