//! libFuzzer entry for [`framefleet_fuzz_entry::edge_process`]; the body lives there so a stable
//! test can replay regressions through the same code.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| framefleet_fuzz_entry::edge_process(data));
