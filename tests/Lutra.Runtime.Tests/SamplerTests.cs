using Lutra.Runtime.Sampling;

namespace Lutra.Runtime.Tests;

/// <summary>The sampler chain on hand-made logits, with llama.cpp's semantics for each stage.</summary>
public class SamplerTests
{
    private static readonly float[] Logits = [1f, 5f, 3f, -2f, 4f, 0f];

    private static Sampler Make(SamplerOptions o) => new(Logits.Length, o, 64);

    private static HashSet<int> Draws(SamplerOptions o, int n = 400)
    {
        var s = Make(o);
        var seen = new HashSet<int>();
        for (var i = 0; i < n; i++)
            seen.Add(s.Sample(Logits));
        return seen;
    }

    [Fact]
    public void Greedy_takes_the_argmax_and_the_lowest_id_on_ties()
    {
        Assert.Equal(1, Make(SamplerOptions.Greedy).Sample(Logits));
        Assert.Equal(0, new Sampler(3, SamplerOptions.Greedy, 8).Sample([2f, 2f, 1f]));
    }

    [Fact]
    public void Top_k_keeps_only_the_k_best()
    {
        var o = new SamplerOptions { Temperature = 5, TopK = 2, TopP = 1, MinP = 0, Seed = 1 };
        Assert.Equal([1, 4], Draws(o).Order());
    }

    [Fact]
    public void Top_p_keeps_the_smallest_set_reaching_p()
    {
        // softmax(5, 4, 3, ...) ≈ 0.63, 0.23, 0.086, ...: p = 0.8 needs the two best.
        var o = new SamplerOptions { Temperature = 5, TopK = 0, TopP = 0.8f, MinP = 0, Seed = 1 };
        Assert.Equal([1, 4], Draws(o).Order());
    }

    [Fact]
    public void Min_p_drops_tokens_below_the_fraction_of_the_best()
    {
        // p(token)/p(best) = exp(l − 5): 4 → 0.37, 3 → 0.135, 1 → 0.018.
        var o = new SamplerOptions { Temperature = 5, TopK = 0, TopP = 1, MinP = 0.1f, Seed = 1 };
        Assert.Equal([1, 2, 4], Draws(o).Order());
    }

    [Fact]
    public void Everything_can_be_drawn_without_truncation()
    {
        var o = new SamplerOptions { Temperature = 100, TopK = 0, TopP = 1, MinP = 0, Seed = 3 };
        Assert.Equal(Logits.Length, Draws(o, 2000).Count);
    }

    [Fact]
    public void Repeat_penalty_divides_positive_and_multiplies_negative_logits()
    {
        var s = Make(SamplerOptions.Greedy with { RepeatPenalty = 2f });
        s.Accept(1); // 5 → 2.5: token 4 (4) now wins
        Assert.Equal(4, s.Sample(Logits));
        var n = new Sampler(2, SamplerOptions.Greedy with { RepeatPenalty = 2f }, 8);
        n.Accept(0); // −1 → −2, so token 1 (−1.5) wins
        Assert.Equal(1, n.Sample([-1f, -1.5f]));
    }

    [Fact]
    public void Frequency_and_presence_penalties_scale_with_the_count()
    {
        var s = Make(SamplerOptions.Greedy with { FrequencyPenalty = 0.4f, PresencePenalty = 0.1f });
        s.Accept(1);
        s.Accept(1); // 5 − 2·0.4 − 0.1 = 4.1 > 4: still best
        Assert.Equal(1, s.Sample(Logits));
        s.Accept(1); // 5 − 1.2 − 0.1 = 3.7 < 4
        Assert.Equal(4, s.Sample(Logits));
    }

    [Fact]
    public void Penalty_window_forgets_old_tokens()
    {
        var s = Make(SamplerOptions.Greedy with { RepeatPenalty = 2f, PenaltyLastN = 2 });
        s.Accept(1);
        s.Accept(5);
        s.Accept(5); // token 1 has left the 2-token window
        Assert.Equal(1, s.Sample(Logits));
    }

    [Fact]
    public void Same_seed_same_draws()
    {
        var o = new SamplerOptions { Temperature = 2, TopK = 0, TopP = 1, MinP = 0, Seed = 11 };
        var a = Make(o);
        var b = Make(o);
        for (var i = 0; i < 50; i++)
            Assert.Equal(a.Sample(Logits), b.Sample(Logits));
    }

    [Fact]
    public void Bad_options_are_rejected()
    {
        Assert.Throws<ArgumentException>(() => Make(new SamplerOptions { TopP = 1.5f }));
        Assert.Throws<ArgumentException>(() => Make(new SamplerOptions { RepeatPenalty = 0 }));
        Assert.Throws<ArgumentException>(() => Make(SamplerOptions.Greedy).Sample([1f]));
    }
}
