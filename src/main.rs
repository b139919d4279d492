fn main() {
    std::process::exit(envelopefs::cli::run());
}
