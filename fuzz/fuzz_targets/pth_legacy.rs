//! The legacy (pre-1.6) `.pth` reader: any bytes must give tensors or an error, never a panic
//! or an allocation the input does not pay for. Inputs are forced to start with the legacy
//! magic so the fuzzer explores the pickle VM and the storage section, not format sniffing.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut bytes = b"\x80\x02\x8a\x0a".to_vec();
    bytes.extend_from_slice(data);
    let _ = normstyle::weights::TensorMap::from_bytes(&bytes, "fuzz.pth", &candle::Device::Cpu);
    // The pickle VM on its own, from the start.
    let _ = normstyle::weights::pickle::load(data, 0, "fuzz");
});
