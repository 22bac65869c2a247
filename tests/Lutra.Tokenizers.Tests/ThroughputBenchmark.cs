using System.Diagnostics;
using System.Text;
using Lutra.Tests;

namespace Lutra.Tokenizers.Tests;

/// <summary>
/// Encoding throughput on ~1 MB of English, run by hand: <c>LUTRA_BENCH=1 dotnet test -c Release --filter ThroughputBenchmark</c>.
/// Prints MB/s; asserts nothing about speed.
/// </summary>
public sealed class ThroughputBenchmark
{
    [Theory]
    [InlineData("models/stories260K.gguf")]
    [InlineData("tokenizer/ggml-vocab-llama-spm.gguf")]
    [InlineData("tokenizer/ggml-vocab-gpt-2.gguf")]
    [InlineData("tokenizer/ggml-vocab-deepseek-coder.gguf")]
    [InlineData("tokenizer/ggml-vocab-bert-bge.gguf")]
    public void Encode_one_megabyte(string vocab)
    {
        Assert.SkipUnless(Environment.GetEnvironmentVariable("LUTRA_BENCH") == "1", "benchmark: set LUTRA_BENCH=1 to run");
        var story = File.ReadAllText(SharedData.Require("reference/perplexity/story.txt"));
        var text = string.Concat(Enumerable.Repeat(story + "\n", 1_000_000 / story.Length + 1));
        var megabytes = Encoding.UTF8.GetByteCount(text) / 1e6;
        var tokenizer = Tokenizer.FromGgufFile(SharedData.Require(vocab));
        tokenizer.Encode(story); // warm-up (JIT, regex compilation)

        var best = double.MaxValue;
        var count = 0;
        for (var run = 0; run < 3; run++)
        {
            var sw = Stopwatch.StartNew();
            count = tokenizer.Encode(text).Length;
            best = Math.Min(best, sw.Elapsed.TotalSeconds);
        }
        TestContext.Current.TestOutputHelper?.WriteLine(
            $"{vocab}: {megabytes:F2} MB → {count} tokens, best of 3 {best * 1000:F0} ms = {megabytes / best:F2} MB/s");
    }
}
