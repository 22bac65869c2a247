using Lutra.Gguf;

namespace Lutra.Cli;

/// <summary>
/// The one place where exceptions become user-facing errors: a one-line message on stderr and a non-zero
/// exit code, never a stack trace for bad input.
/// </summary>
internal static class CliErrors
{
    public static int Run(Func<int> action)
    {
        try
        {
            return action();
        }
        catch (Exception e) when (IsUserError(e))
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return 1;
        }
    }

    public static async Task<int> RunAsync(Func<Task<int>> action)
    {
        try
        {
            return await action().ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            return 130;
        }
        catch (Exception e) when (IsUserError(e))
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return 1;
        }
    }

    private static bool IsUserError(Exception e) => e is GgufFormatException or NotSupportedException
        or Lutra.Models.ContextFullException or Lutra.Runtime.ChatTemplates.ChatTemplateException
        or FileNotFoundException or DirectoryNotFoundException or UnauthorizedAccessException
        or InvalidDataException or ArgumentException or FormatException or IOException;
}
