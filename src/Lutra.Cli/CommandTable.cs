using System.CommandLine;

namespace Lutra.Cli;

/// <summary>Every `lutra` subcommand, one line each; each command lives in its own file under Commands/.</summary>
internal static class CommandTable
{
    public static IEnumerable<Command> All =>
    [
        Commands.SynthCommand.Create(),
        Commands.BenchCommand.Create(),
        Commands.TokenizeCommand.Create(),
        Commands.InfoCommand.Create(),
        Commands.RunCommand.Create(),
        Commands.LogitsCommand.Create(),
        Commands.PerplexityCommand.Create(),
        Commands.ChatCommand.Create(),
        Commands.ChatTemplateCommand.Create(),
    ];
}
