using System.Globalization;
using System.Text.Json;
using Lutra.Tests;

namespace Lutra.Runtime.Tests;

public class PerplexityTests
{
    [Theory]
    [InlineData("stories260K", 0.001)]
    [InlineData("stories260K-Q8_0", 0.003)]
    [InlineData("stories260K-Q4_0", 0.003)]
    public void Perplexity_over_the_story_matches_llama_perplexity(string stem, double relativeTolerance)
    {
        var tokens = File.ReadAllText(SharedData.Require("reference/perplexity/story.stories260K.tokens.txt"))
            .Split((char[])[' ', '\n', '\r'], StringSplitOptions.RemoveEmptyEntries)
            .Select(s => int.Parse(s, CultureInfo.InvariantCulture)).ToArray();
        using var json = JsonDocument.Parse(File.ReadAllText(SharedData.Require("reference/perplexity/results.json")));
        var expected = json.RootElement.GetProperty("models").GetProperty(stem);

        using var model = LutraModel.Load(SharedData.Model(stem + ".gguf"));
        PerplexityResult result;
        try
        {
            result = Perplexity.Compute(model, tokens, 128, bosId: 1, cancellationToken: TestContext.Current.CancellationToken);
        }
        catch (NotSupportedException e)
        {
            Assert.Skip($"{stem}: {e.Message} (the quant reference kernels are not in this build)");
            throw;
        }

        var ppl = expected.GetProperty("final_ppl").GetDouble();
        var unc = expected.GetProperty("final_ppl_uncertainty").GetDouble();
        TestContext.Current.TestOutputHelper?.WriteLine(
            $"{stem}: PPL {result.Perplexity:F4} ± {result.Uncertainty:F5} (llama.cpp {ppl} ± {unc}), {result.ScoredTokens} tokens");
        Assert.Equal(3969, result.ScoredTokens);
        Assert.Equal(63, result.RunningPerplexity.Count);
        Assert.True(Math.Abs(result.Perplexity - ppl) / ppl <= relativeTolerance, $"PPL {result.Perplexity} vs {ppl}");
        Assert.True(Math.Abs(result.Uncertainty - unc) / unc <= 0.01, $"± {result.Uncertainty} vs {unc}");
        var running = expected.GetProperty("running_ppl_printed").EnumerateArray().Select(e => e.GetDouble()).ToArray();
        Assert.True(Math.Abs(result.RunningPerplexity[0] - running[0]) / running[0] <= relativeTolerance * 2,
            $"first chunk {result.RunningPerplexity[0]} vs {running[0]}");
    }

    [Fact]
    public void Too_short_text_is_a_clear_error()
    {
        using var model = LutraModel.Load(SharedData.Model("stories260K.gguf"));
        var e = Assert.Throws<ArgumentException>(() => Perplexity.Compute(model, new int[200], 128, 1, cancellationToken: TestContext.Current.CancellationToken));
        Assert.Contains("at least 2 × 128 tokens", e.Message, StringComparison.Ordinal);
    }
}
