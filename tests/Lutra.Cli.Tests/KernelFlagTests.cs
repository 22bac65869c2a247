using System.Runtime.InteropServices;
using System.Text.Json;
using Lutra.Tests;

namespace Lutra.Cli.Tests;

[Collection(ConsoleCollection.Name)]
public sealed class KernelFlagTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("lutra-cli-kernel-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void Bench_measures_each_kernel_choice_in_one_run_and_names_the_kernel_of_every_shape()
    {
        var model = SharedData.Model("tiny-synth-TQ2_0.gguf");
        var (exit, stdout, stderr) = LutraCli.Run("bench", "-m", model, "-p", "0", "-n", "2", "-t", "1", "-r", "1", "--kernel", "auto,mad", "--json");
        Assert.True(exit == 0, stderr);
        using var json = JsonDocument.Parse(stdout);
        var rows = json.RootElement.EnumerateArray().ToArray();
        Assert.Equal(["auto", "mad"], rows.Select(r => r.GetProperty("kernel_choice").GetString()));
        foreach (var row in rows)
        {
            var shapes = row.GetProperty("kernel_shapes").EnumerateArray().ToArray();
            Assert.NotEmpty(shapes);
            Assert.All(shapes, s => Assert.StartsWith("TQ2_0 ", s.GetProperty("shape").GetString(), StringComparison.Ordinal));
            Assert.All(shapes, s => Assert.Contains("TQ2_0 x Q8_K", s.GetProperty("kernel").GetString(), StringComparison.Ordinal));
            Assert.True(row.GetProperty("kernel_choice_ms").GetDouble() >= row.GetProperty("kernel_tuning_ms").GetDouble());
        }
        // MAD is never timed; its shapes were decided by the flag (or had no other candidate).
        Assert.All(rows[1].GetProperty("kernel_shapes").EnumerateArray(),
            s => Assert.Contains(s.GetProperty("source").GetString(), (string[])["forced", "only candidate"]));
        Assert.Equal(0, rows[1].GetProperty("kernel_tuning_ms").GetDouble());
        // The chosen kernel of every shape is printed for each choice.
        Assert.Contains("--kernel auto -t 1: kernels chosen", stderr, StringComparison.Ordinal);
        Assert.Contains("--kernel mad -t 1: kernels chosen", stderr, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("bench", "--kernel", "table")]
    [InlineData("bench", "--kernel", "auto,fast")]
    [InlineData("run", "-p", "hi", "--kernel", "fastest")]
    [InlineData("logits", "--tokens", "1 2", "-o", "x.bin", "--kernel", "MADD")]
    [InlineData("perplexity", "-f", "FILE", "--kernel", "none")]
    public void A_bad_kernel_choice_is_one_error_line(params string[] args)
    {
        var text = Path.Combine(_dir, "text.txt");
        File.WriteAllText(text, "Once upon a time");
        var model = SharedData.Model("stories260K.gguf");
        string[] full = [args[0], "-m", model, .. args[1..].Select(a => a == "FILE" ? text : a == "x.bin" ? Path.Combine(_dir, a) : a)];
        var (exit, _, stderr) = LutraCli.Run(full);
        Assert.Equal(1, exit);
        Assert.StartsWith("error: --kernel: '", stderr, StringComparison.Ordinal);
        Assert.Contains("is not a kernel choice (auto, mad, repacked, lut or interleaved)", stderr, StringComparison.Ordinal);
        Assert.Single(stderr.Trim().Split('\n'));
    }

    [Fact]
    public void An_empty_kernel_list_is_an_error()
    {
        var (exit, _, stderr) = LutraCli.Run("bench", "-m", SharedData.Model("stories260K.gguf"), "--kernel", ",");
        Assert.Equal(1, exit);
        Assert.StartsWith("error: --kernel needs at least one of", stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void Logits_agree_whichever_kernels_are_forced()
    {
        var model = SharedData.Model("tiny-synth-TQ2_0.gguf");
        float[] Logits(params string[] flags)
        {
            var output = Path.Combine(_dir, $"{Guid.NewGuid():N}.bin");
            var (exit, _, stderr) = LutraCli.Run(["logits", "-m", model, "--tokens", "1 50 100 7", "-o", output, "-t", "1", .. flags]);
            Assert.True(exit == 0, stderr);
            return MemoryMarshal.Cast<byte, float>(File.ReadAllBytes(output)).ToArray();
        }
        var mad = Logits("--kernel", "mad");
        var repacked = Logits("--kernel", "repacked");
        var untuned = Logits("--no-tune");
        Assert.Equal(mad.Length, repacked.Length);
        // Kernels differ only in f32 summation order: far below llama.cpp's own 0.1 mean-difference bar.
        Assert.True(mad.Zip(repacked).Average(p => Math.Abs(p.First - p.Second)) < 1e-3);
        Assert.True(mad.Zip(untuned).Average(p => Math.Abs(p.First - p.Second)) < 1e-3);
    }

    [Fact]
    public void Repack_cache_flag_reads_the_weights_back_on_the_second_run()
    {
        var model = Path.Combine(_dir, "model.gguf");
        File.Copy(SharedData.Model("tiny-synth-Q4_0.gguf"), model);
        var cache = Path.Combine(_dir, "repacked");
        string[] args = ["bench", "-m", model, "-p", "0", "-n", "1", "-t", "1", "-r", "1", "--kernel", "repacked", "--repack-cache", cache];
        var (exit, _, stderr) = LutraCli.Run(args);
        Assert.True(exit == 0, stderr);
        Assert.Matches(@"repack cache .*: 0 matrices read, [1-9][0-9]* written", stderr);
        (exit, _, stderr) = LutraCli.Run(args);
        Assert.True(exit == 0, stderr);
        Assert.Matches(@"repack cache .*: [1-9][0-9]* matrices read, 0 written", stderr);
    }

    [Fact]
    public void A_repack_cache_that_is_a_file_is_one_error_line()
    {
        var file = Path.Combine(_dir, "not-a-directory");
        File.WriteAllText(file, "x");
        var (exit, _, stderr) = LutraCli.Run("run", "-m", SharedData.Model("stories260K.gguf"), "-p", "hi", "--repack-cache", file);
        Assert.Equal(1, exit);
        Assert.Equal($"error: --repack-cache: '{file}' is a file, not a directory", stderr.Trim());
    }
}
