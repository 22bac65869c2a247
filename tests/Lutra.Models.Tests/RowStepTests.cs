using Lutra.Models.Blocks;

namespace Lutra.Models.Tests;

/// <summary>The vectorized per-row steps against their scalar definitions (llama.cpp's formulas).</summary>
public class RowStepTests
{
    private static int Ulps(float expected, float actual) =>
        Math.Abs(BitConverter.SingleToInt32Bits(expected) - BitConverter.SingleToInt32Bits(actual));

    [Fact]
    public void SwiGlu_is_within_four_ulps_of_the_scalar_silu_over_the_whole_range()
    {
        // Rows of odd length (a scalar tail), gates from −120 to 120 (past exp's overflow) and the special values.
        var gates = new List<float> { 0f, -0f, float.Epsilon, -float.Epsilon, 1e-30f, -1e-30f, 88.7f, -88.7f, 89f, -89f, 104f, -104f,
            float.MaxValue, float.MinValue, float.PositiveInfinity, float.NegativeInfinity, float.NaN };
        for (var i = -240_000; i <= 240_000; i++)
            gates.Add(i * 5e-4f);
        var rnd = new Random(5);
        var up = gates.Select(_ => (float)(rnd.NextDouble() * 4 - 2)).ToArray();
        var gate = gates.ToArray();
        SwiGlu.Apply(gate, up);
        for (var i = 0; i < gate.Length; i++)
        {
            var x = gates[i];
            var expected = x / (1f + MathF.Exp(-x)) * up[i];
            if (float.IsNaN(expected))
            {
                Assert.True(float.IsNaN(gate[i]), $"silu({x:R}) is NaN, got {gate[i]:R}");
                continue;
            }
            // Below x ≈ −87.3 the vector exp flushes e^x (a subnormal) to zero, so results under 1e-30 may be 0.
            Assert.True(Ulps(expected, gate[i]) <= 4 || Math.Abs(expected - gate[i]) < 1e-30f,
                $"silu({x:R})·{up[i]:R} = {expected:R}, got {gate[i]:R} ({Ulps(expected, gate[i])} ulps)");
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(7)]
    [InlineData(64)]
    [InlineData(2051)]
    public void RmsNorm_equals_the_sequential_double_sum_definition(int n)
    {
        var rnd = new Random(n);
        var x = Enumerable.Range(0, n).Select(_ => (float)(rnd.NextDouble() * 20 - 10)).ToArray();
        var weight = Enumerable.Range(0, n).Select(_ => (float)(rnd.NextDouble() * 2 - 1)).ToArray();
        var y = new float[n];
        RmsNorm.Apply(x, weight, 1e-5f, y);

        var sum = 0.0;
        foreach (var v in x)
            sum += v * v;
        var scale = 1.0f / MathF.Sqrt((float)(sum / n) + 1e-5f);
        for (var i = 0; i < n; i++)
            Assert.Equal(x[i] * scale * weight[i], y[i]);
    }

    [Fact]
    public void RmsNorm_works_in_place()
    {
        var x = Enumerable.Range(0, 100).Select(i => (float)Math.Sin(i)).ToArray();
        var expected = new float[x.Length];
        var weight = Enumerable.Repeat(0.5f, x.Length).ToArray();
        RmsNorm.Apply(x, weight, 1e-6f, expected);
        RmsNorm.Apply(x, weight, 1e-6f, x);
        Assert.Equal(expected, x);
    }
}
