//! The `lectern` binary: everything happens in the library's `cli::run`.

fn main() -> std::process::ExitCode {
    lectern::cli::run()
}
