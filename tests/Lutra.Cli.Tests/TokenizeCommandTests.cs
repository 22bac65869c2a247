using System.Diagnostics;
using Lutra.Tests;

namespace Lutra.Cli.Tests;

/// <summary>`lutra tokenize`, run as a process against the built CLI.</summary>
public sealed class TokenizeCommandTests
{
    private static (int ExitCode, string Stdout, string Stderr) Lutra(params string[] args)
    {
        var dll = Path.Combine(AppContext.BaseDirectory, "lutra.dll");
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add(dll);
        foreach (var a in args)
            start.ArgumentList.Add(a);
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEnd();
        process.WaitForExit();
        return (process.ExitCode, stdout.Result, stderr);
    }

    [Fact]
    public void Ids_mode_prints_llama_cpp_ids_on_one_line()
    {
        var (code, stdout, stderr) = Lutra("tokenize", "-m", SharedData.Model("stories260K.gguf"), "-p", "Once upon a time", "--ids");
        Assert.Equal(0, code);
        Assert.Equal("", stderr);
        Assert.Equal("1 403 407 261 378\n", stdout.Replace("\r\n", "\n"));
    }

    [Fact]
    public void File_input_is_read_exactly()
    {
        var story = SharedData.Require("reference/perplexity/story.txt");
        var expected = File.ReadAllText(SharedData.Require("reference/perplexity/story.stories260K.tokens.txt")).Trim();
        var (code, stdout, _) = Lutra("tokenize", "-m", SharedData.Model("stories260K.gguf"), "-f", story, "--ids");
        Assert.Equal(0, code);
        Assert.Equal(expected, stdout.Trim());
    }

    [Fact]
    public void Pieces_mode_prints_id_and_piece_per_line()
    {
        var (code, stdout, _) = Lutra("tokenize", "-m", SharedData.Model("stories260K.gguf"), "-p", "Once upon", "--pieces", "--no-bos");
        Assert.Equal(0, code);
        Assert.Equal("403\t Once\n407\t upon\n", stdout.Replace("\r\n", "\n"));
    }

    [Fact]
    public void Missing_model_is_an_error_line()
    {
        var (code, _, stderr) = Lutra("tokenize", "-m", "/no/such/model.gguf", "-p", "x");
        Assert.Equal(1, code);
        Assert.StartsWith("error: ", stderr);
    }

    [Fact]
    public void Prompt_and_file_together_are_rejected()
    {
        var (code, _, stderr) = Lutra("tokenize", "-m", "whatever.gguf", "-p", "x", "-f", "y");
        Assert.Equal(1, code);
        Assert.Contains("exactly one of --prompt", stderr);
    }
}
