using System.Reflection;

namespace Lutra.Cli.Tests;

/// <summary>Tests that swap the process-wide Console streams run one at a time, in this collection.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class ConsoleCollection
{
    public const string Name = "Console";
}

/// <summary>
/// Runs the real `lutra` entry point in-process with Console.Out and Console.Error captured, so tests see
/// exactly what a user would: the text, the `error:` line and the exit code.
/// </summary>
internal static class LutraCli
{
    private static readonly Lock Gate = new();
    private static readonly MethodInfo EntryPoint =
        Assembly.Load("lutra").EntryPoint ?? throw new InvalidOperationException("lutra.dll has no entry point");

    public static (int ExitCode, string Out, string Error) Run(params string[] args)
    {
        lock (Gate)
        {
            var (oldOut, oldError) = (Console.Out, Console.Error);
            var (stdout, stderr) = (new StringWriter(), new StringWriter());
            Console.SetOut(stdout);
            Console.SetError(stderr);
            try
            {
                var exit = (int)EntryPoint.Invoke(null, [args])!;
                return (exit, stdout.ToString(), stderr.ToString());
            }
            finally
            {
                Console.SetOut(oldOut);
                Console.SetError(oldError);
            }
        }
    }
}
