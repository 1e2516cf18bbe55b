//! Safetensors validation: a checkpoint that loads must also pass (or cleanly fail) the AdaIN
//! structure checks.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(map) = normstyle::weights::TensorMap::from_bytes(data, "fuzz.safetensors", &candle::Device::Cpu) {
        let _ = normstyle::weights::store::identify(&map, &normstyle::model::adain::layouts());
        for k in map.keys() {
            let _ = map.get(k, &[1]);
        }
    }
});
