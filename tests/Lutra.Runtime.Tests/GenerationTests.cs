using System.Text.Json;
using Lutra.Models;
using Lutra.Runtime.Sampling;
using Lutra.Tests;

namespace Lutra.Runtime.Tests;

public class GenerationTests
{
    private static readonly int[] OnceUponATime = [1, 403, 407, 261, 378];

    [Fact]
    public void Greedy_200_tokens_on_stories260K_match_llama_cpp()
    {
        using var json = JsonDocument.Parse(File.ReadAllText(SharedData.Require("reference/generate/stories260K.greedy.json")));
        var expected = json.RootElement.GetProperty("generated_tokens").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        var prompt = json.RootElement.GetProperty("prompt_tokens").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        Assert.Equal(OnceUponATime, prompt);

        using var model = LutraModel.Load(SharedData.Model("stories260K.gguf"));
        var context = model.CreateContext(new InferenceOptions { ContextSize = 512 });
        var options = new GenerationOptions { MaxTokens = 200, Sampling = SamplerOptions.Greedy };
        var generated = context.GenerateTokens(prompt, options, TestContext.Current.CancellationToken).ToArray();

        Assert.Equal(200, generated.Length);
        // The README asks for exactness up to index 181, where the top-2 logit margin is only 0.0024.
        Assert.Equal(expected[..181], generated[..181]);
        var stats = context.LastGeneration!;
        Assert.Equal(FinishReason.Length, stats.FinishReason);
        TestContext.Current.TestOutputHelper?.WriteLine(
            $"identical tokens: {expected.Zip(generated).TakeWhile(p => p.First == p.Second).Count()}/200; " +
            $"prompt {stats.PromptTokensPerSecond:F0} tok/s, generation {stats.GenerationTokensPerSecond:F0} tok/s");
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public void Decode_loop_allocates_nothing_per_token_after_warm_up(int threads)
    {
        using var model = LutraModel.Load(SharedData.Model("stories260K.gguf"));
        using var context = model.CreateContext(new InferenceOptions { ContextSize = 256, Threads = threads });
        // Non-greedy with penalties, so top-k/top-p/min-p/penalty paths all run.
        var options = new GenerationOptions
        {
            MaxTokens = 150,
            Sampling = new SamplerOptions { Seed = 7, RepeatPenalty = 1.1f, FrequencyPenalty = 0.1f, PresencePenalty = 0.1f },
        };
        long before = 0, after = 0;
        var n = 0;
        foreach (var _ in context.GenerateTokens(OnceUponATime, options, TestContext.Current.CancellationToken))
        {
            n++;
            if (n == 20)
                before = GC.GetAllocatedBytesForCurrentThread();
            if (n == 120)
                after = GC.GetAllocatedBytesForCurrentThread();
        }
        Assert.True(n >= 120, $"generation ended after {n} tokens");
        Assert.Equal(0, after - before);
    }

    [Fact]
    public void Same_seed_gives_the_same_tokens_and_other_seeds_differ()
    {
        using var model = LutraModel.Load(SharedData.Model("stories260K.gguf"));
        var context = model.CreateContext(new InferenceOptions { ContextSize = 128 });
        int[] Run(int seed) => context.GenerateTokens(OnceUponATime, new GenerationOptions
        {
            MaxTokens = 40,
            Sampling = new SamplerOptions { Temperature = 1.5f, TopK = 0, TopP = 1, MinP = 0, Seed = seed },
        }, TestContext.Current.CancellationToken).ToArray();
        var a = Run(1);
        Assert.Equal(a, Run(1));
        Assert.NotEqual(a, Run(2));
    }

    [Fact]
    public void Prompt_prefix_in_the_cache_is_reused_and_gives_the_same_logits()
    {
        using var model = LutraModel.Load(SharedData.Model("stories260K.gguf"));
        var fresh = model.CreateContext(new InferenceOptions { ContextSize = 64 });
        int[] longer = [.. OnceUponATime, 432, 383, 286];
        var expected = fresh.Evaluate(longer).ToArray();

        var reused = model.CreateContext(new InferenceOptions { ContextSize = 64 });
        reused.Evaluate(OnceUponATime);
        Assert.Equal(3, reused.EvaluatePrompt(longer));
        Assert.Equal(expected, reused.Logits.ToArray());
        Assert.Equal(1, reused.EvaluatePrompt(longer)); // identical prompt: only the last token again
        Assert.Equal(expected, reused.Logits.ToArray());
    }

    [Fact]
    public void Token_by_token_decoding_matches_one_batch()
    {
        using var model = LutraModel.Load(SharedData.Model("stories260K.gguf"));
        var batch = model.CreateContext(new InferenceOptions { ContextSize = 16 });
        var expected = batch.Evaluate(OnceUponATime).ToArray();
        var single = model.CreateContext(new InferenceOptions { ContextSize = 16 });
        foreach (var t in OnceUponATime)
            single.Evaluate([t]);
        Assert.Equal(expected, single.Logits.ToArray());
    }

    [Fact]
    public void Full_context_is_a_clear_error_and_generation_stops_at_the_end_of_the_context()
    {
        using var model = LutraModel.Load(SharedData.Model("stories260K.gguf"));
        var context = model.CreateContext(new InferenceOptions { ContextSize = 8 });
        context.Evaluate(OnceUponATime);
        var e = Assert.Throws<ContextFullException>(() => context.Evaluate([1, 2, 3, 4]));
        Assert.Contains("context size 8", e.Message, StringComparison.Ordinal);

        var tokens = context.GenerateTokens(OnceUponATime, new GenerationOptions { Sampling = SamplerOptions.Greedy },
            TestContext.Current.CancellationToken).ToArray();
        Assert.Equal(4, tokens.Length); // 5 prompt tokens + 3 evaluated + 1 last sampled
        Assert.Equal(FinishReason.Length, context.LastGeneration!.FinishReason);
    }

    [Fact]
    public void Out_of_vocabulary_token_is_rejected()
    {
        using var model = LutraModel.Load(SharedData.Model("stories260K.gguf"));
        var context = model.CreateContext(new InferenceOptions { ContextSize = 8 });
        Assert.Throws<ArgumentOutOfRangeException>(() => context.Evaluate([1, 512]));
    }

    [Fact]
    public void Cancellation_is_checked_per_token()
    {
        using var model = LutraModel.Load(SharedData.Model("stories260K.gguf"));
        var context = model.CreateContext(new InferenceOptions { ContextSize = 64 });
        using var cts = new CancellationTokenSource();
        var n = 0;
        Assert.Throws<OperationCanceledException>(() =>
        {
            foreach (var _ in context.GenerateTokens(OnceUponATime, new GenerationOptions { Sampling = SamplerOptions.Greedy }, cts.Token))
            {
                if (++n == 3)
                    cts.Cancel();
            }
        });
        Assert.Equal(3, n);
    }
}
