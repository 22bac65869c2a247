using Lutra.Models.Blocks;

namespace Lutra.Models.Tests;

/// <summary>RoPE angles against the closed forms of formats.md §5.3.</summary>
public class RopeTests
{
    private static HyperParameters Params(RopeScaling scaling, float factor) => new()
    {
        Architecture = Architecture.Llama, ContextLength = 2048, EmbeddingLength = 512, LayerCount = 1, FeedForwardLength = 1,
        HeadCount = 8, HeadCountKv = 8, HeadDim = 64, VocabSize = 1, RmsEpsilon = 1e-5f, RopeDimensions = 64,
        RopeFreqBase = 10000f, RopeFreqScale = factor == 0 ? 1 : 1 / factor, RopeScaling = scaling, RopeAttnFactor = 1f,
        RopeOriginalContext = 512,
    };

    private static double Theta(int position, int pair) => position * Math.Pow(10000, -2.0 * pair / 64);

    private static (float[] Cos, float[] Sin) Angles(Rope rope, int position)
    {
        var cos = new float[32];
        var sin = new float[32];
        rope.Angles(position, cos, sin);
        return (cos, sin);
    }

    [Fact]
    public void Unscaled_angles_follow_position_times_base_power()
    {
        var (cos, sin) = Angles(new Rope(Params(RopeScaling.None, 0), null), 37);
        for (var i = 0; i < 32; i++)
        {
            Assert.Equal(Math.Cos(Theta(37, i)), cos[i], 1e-4);
            Assert.Equal(Math.Sin(Theta(37, i)), sin[i], 1e-4);
        }
    }

    [Fact]
    public void Linear_scaling_divides_positions_by_the_factor()
    {
        var (cos, sin) = Angles(new Rope(Params(RopeScaling.Linear, 4), null), 4 * 37);
        for (var i = 0; i < 32; i++)
        {
            Assert.Equal(Math.Cos(Theta(37, i)), cos[i], 1e-4);
            Assert.Equal(Math.Sin(Theta(37, i)), sin[i], 1e-4);
        }
    }

    [Fact]
    public void Rope_freqs_divide_each_pair_angle()
    {
        var divisors = Enumerable.Range(1, 32).Select(i => (float)i).ToArray();
        var (cos, _) = Angles(new Rope(Params(RopeScaling.None, 0), divisors), 37);
        for (var i = 0; i < 32; i++)
            Assert.Equal(Math.Cos(Theta(37, i) / (i + 1)), cos[i], 1e-4);
    }

    [Fact]
    public void Yarn_extrapolates_fast_pairs_interpolates_slow_pairs_and_scales_magnitude()
    {
        // n_rot 64, n_ctx_orig 512, base 1e4: corr dims are [floor(3.25), ceil(15.3)] = [3, 16].
        var (cos, sin) = Angles(new Rope(Params(RopeScaling.Yarn, 4), null), 100);
        var mscale = 1 + 0.1 * Math.Log(4);
        for (var i = 0; i < 32; i++)
            Assert.Equal(mscale, Math.Sqrt(cos[i] * cos[i] + sin[i] * sin[i]), 1e-5);
        for (var i = 0; i <= 3; i++)
            Assert.Equal(Math.Cos(Theta(100, i)) * mscale, cos[i], 1e-3);
        for (var i = 16; i < 32; i++)
            Assert.Equal(Math.Cos(Theta(100, i) / 4) * mscale, cos[i], 1e-4);
        var mid = 9; // ramp = 1 − (9 − 3)/13
        var mix = 1 - 6.0 / 13;
        Assert.Equal(Math.Cos(Theta(100, mid) / 4 * (1 - mix) + Theta(100, mid) * mix) * mscale, cos[mid], 1e-3);
    }

    [Fact]
    public void Normal_rotation_pairs_neighbours_and_neox_pairs_halves()
    {
        var normal = new Rope(Params(RopeScaling.None, 0), null);
        var neoxParams = Params(RopeScaling.None, 0) with { Architecture = Architecture.Qwen2 };
        var neox = new Rope(neoxParams, null);
        var cos = new float[32];
        var sin = new float[32];
        normal.Angles(1, cos, sin);
        var v = new float[64];
        v[0] = 1; // pair 0: (0, 1) in normal, (0, 32) in NeoX
        var w = (float[])v.Clone();
        normal.Rotate(v, 64, cos, sin);
        neox.Rotate(w, 64, cos, sin);
        Assert.Equal(sin[0], v[1], 1e-6);
        Assert.Equal(0f, v[32]);
        Assert.Equal(sin[0], w[32], 1e-6);
        Assert.Equal(0f, w[1]);
    }

    [Theory]
    [InlineData("llama", 64, 64)]
    [InlineData("qwen2", 64, 64)]
    [InlineData("llama", 128, 128)]
    [InlineData("qwen2", 128, 64)]
    public void Vector_rotation_gives_the_per_pair_bits(string architecture, int headDim, int ropeDims)
    {
        // RotateVector rewrites x0·cos − x1·sin and x0·sin + x1·cos only in ways that are exact in IEEE arithmetic.
        var hp = Params(RopeScaling.None, 0) with
        {
            Architecture = architecture == "llama" ? Architecture.Llama : Architecture.Qwen2,
            HeadDim = headDim, EmbeddingLength = 4 * headDim, HeadCount = 4, HeadCountKv = 4, RopeDimensions = ropeDims,
        };
        var rope = new Rope(hp, null);
        var rng = new Random(headDim + ropeDims);
        foreach (var position in new[] { 0, 1, 37, 4095 })
        {
            var cos = new float[ropeDims / 2];
            var sin = new float[ropeDims / 2];
            rope.Angles(position, cos, sin);
            var heads = new float[4 * headDim];
            for (var i = 0; i < heads.Length; i++)
                heads[i] = (float)(rng.NextDouble() * 8 - 4);
            var expected = (float[])heads.Clone();
            rope.RotateScalar(expected, headDim, cos, sin);
            rope.Rotate(heads, headDim, cos, sin);
            Assert.Equal(expected, heads);
        }
    }
}
