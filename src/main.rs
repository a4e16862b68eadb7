fn main() -> std::process::ExitCode {
    gmp::cli::main()
}
