fn main() {
    std::process::exit(hecto_watch::cli::main());
}
