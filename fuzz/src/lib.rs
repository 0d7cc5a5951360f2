//! Helpers shared by the fuzz targets. Nothing here calls rsgi: these are the independent
//! oracles the targets compare rsgi against.

pub mod wire;

/// A logger that formats every record at every level and throws the text away, installed by the
/// targets that run rsgi's code: a log argument that panics (a request target sliced inside a
/// character, once) is only evaluated when a logger is installed and the level enabled.
pub fn evaluate_every_log_record() {
    struct Evaluating;

    impl log::Log for Evaluating {
        fn enabled(&self, _: &log::Metadata) -> bool {
            true
        }

        fn log(&self, record: &log::Record) {
            std::hint::black_box(record.args().to_string());
        }

        fn flush(&self) {}
    }

    if log::set_logger(&Evaluating).is_ok() {
        log::set_max_level(log::LevelFilter::Trace);
    }
}
