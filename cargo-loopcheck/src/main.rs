fn main() -> std::process::ExitCode {
    cargo_loopcheck::main()
}
