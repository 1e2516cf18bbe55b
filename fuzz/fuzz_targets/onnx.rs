//! The ONNX importer (protobuf decoding, dequantization, name mapping) on any bytes, for each
//! of the three Magenta graphs.
#![no_main]
use libfuzzer_sys::fuzz_target;
use normstyle::weights::onnx::{import_magenta, MagentaGraph};

fuzz_target!(|data: &[u8]| {
    for g in MagentaGraph::ALL {
        let _ = import_magenta(data, g, "fuzz.onnx");
    }
});
