#![forbid(unsafe_code)]

fn main() {
    std::process::exit(envelopefs::cli::run());
}
