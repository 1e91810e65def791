import ArgumentParser

@main
struct CertgateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "certgate",
        abstract: "A TLS-terminating gateway that serves the right certificate for every handshake.",
        subcommands: [RunCommand.self, CheckCommand.self, InspectCommand.self, ControlCommand.self, AuthorityCommand.self],
        defaultSubcommand: RunCommand.self
    )
}
