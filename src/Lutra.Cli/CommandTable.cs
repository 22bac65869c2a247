using System.CommandLine;

namespace Lutra.Cli;

/// <summary>Every `lutra` subcommand, one line each; each command lives in its own file under Commands/.</summary>
internal static class CommandTable
{
    public static IEnumerable<Command> All =>
    [
        Commands.ChatTemplateCommand.Create(),
    ];
}
