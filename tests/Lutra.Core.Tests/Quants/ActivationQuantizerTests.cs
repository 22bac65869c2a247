using System.Runtime.InteropServices;
using Lutra.Core.Quants;

namespace Lutra.Core.Tests.Quants;

/// <summary>Hand-checkable cases of the activation quantizers (formats.md §3) and of where they differ from the weight quantizers.</summary>
public sealed class ActivationQuantizerTests
{
    /// <summary>A block whose largest magnitude is 127, so d = 1 and x·id = x exactly for every variant.</summary>
    private static float[] TieBlock(int size, float max)
    {
        var x = new float[size];
        x[0] = max;
        float[] ties = [0.5f, 1.5f, 2.5f, -0.5f, -1.5f, -2.5f, 3.49f, -3.51f];
        ties.CopyTo(x, 1);
        return x;
    }

    [Fact]
    public void Q8_0_activations_round_half_to_even_but_the_weight_quantizer_rounds_away_from_zero()
    {
        var x = TieBlock(32, 127f);
        var act = new byte[34];
        var weight = new byte[34];
        QuantReference.QuantizeActivations(GgmlType.Q8_0, x, act);
        QuantReference.Quantize(GgmlType.Q8_0, x, weight);

        var a = MemoryMarshal.Read<BlockQ8_0>(act);
        var w = MemoryMarshal.Read<BlockQ8_0>(weight);
        Assert.Equal((Half)1f, a.D);
        Assert.Equal((Half)1f, w.D);
        unsafe
        {
            sbyte[] even = [127, 0, 2, 2, 0, -2, -2, 3, -4];
            sbyte[] away = [127, 1, 2, 3, -1, -2, -3, 3, -4];
            for (var i = 0; i < even.Length; i++)
            {
                Assert.Equal(even[i], a.Qs[i]);
                Assert.Equal(away[i], w.Qs[i]);
            }
        }
    }

    [Fact]
    public void Q8_1_activations_carry_d_times_the_sum_of_quants()
    {
        var x = TieBlock(32, -127f);
        var act = new byte[36];
        QuantReference.QuantizeActivations(GgmlType.Q8_1, x, act);
        var a = MemoryMarshal.Read<BlockQ8_1>(act);
        // quants: −127, 0, 2, 2, 0, −2, −2, 3, −4 → Σ = −128; d = 1.
        Assert.Equal((Half)1f, a.D);
        Assert.Equal((Half)(-128f), a.S);
    }

    [Fact]
    public void Q8_K_uses_the_signed_max_rounds_half_to_even_and_fills_bsums()
    {
        // max = −127 → iscale = −127/max = 1, d = 1/iscale = 1 (an f32, not rounded to f16).
        var x = new float[256];
        TieBlock(32, -127f).CopyTo(x, 0);
        x[20] = 127f; // x·iscale = 127 stays in range
        x[255] = 0.25f;
        var act = new byte[292];
        QuantReference.QuantizeActivations(GgmlType.Q8_K, x, act);
        var a = MemoryMarshal.Read<BlockQ8_K>(act);
        Assert.Equal(1f, a.D);
        unsafe
        {
            sbyte[] expected = [-127, 0, 2, 2, 0, -2, -2, 3, -4];
            for (var i = 0; i < expected.Length; i++)
                Assert.Equal(expected[i], a.Qs[i]);
            Assert.Equal(127, a.Qs[20]);
            Assert.Equal(-128, a.Bsums[0]);
            Assert.Equal(127, a.Bsums[1]);
            Assert.Equal(0, a.Bsums[15]);
        }
    }

    [Fact]
    public void Q8_K_with_a_positive_max_gets_a_negative_scale()
    {
        // max = +2 → iscale = −63.5, d = 1/iscale < 0, quants are negated: the sign lives in d.
        var x = new float[256];
        x[0] = 2f;
        x[1] = -1f;
        var act = new byte[292];
        QuantReference.QuantizeActivations(GgmlType.Q8_K, x, act);
        var a = MemoryMarshal.Read<BlockQ8_K>(act);
        Assert.Equal(1f / -63.5f, a.D);
        unsafe
        {
            Assert.Equal(-127, a.Qs[0]);
            Assert.Equal(64, a.Qs[1]); // 63.5 → 64 (half to even)
        }
    }

    [Fact]
    public void An_all_zero_block_quantizes_to_zero()
    {
        foreach (var type in new[] { GgmlType.Q8_0, GgmlType.Q8_1, GgmlType.Q8_K })
        {
            var bytes = new byte[QuantReference.ActivationRowBytes(type, 256)];
            Array.Fill(bytes, (byte)0xAB);
            QuantReference.QuantizeActivations(type, new float[256], bytes);
            Assert.All(bytes, b => Assert.Equal(0, b));
        }
    }

    [Fact]
    public void F16_and_BF16_activations_round_to_nearest_even()
    {
        // 1 + 2^-11 is halfway between two f16 values: ties to the even one (1.0).
        var act = new byte[4];
        QuantReference.QuantizeActivations(GgmlType.F16, [1f + MathF.Pow(2, -11), 1f + 3 * MathF.Pow(2, -11)], act);
        Assert.Equal((Half)1f, BitConverter.ToHalf(act, 0));
        Assert.Equal((Half)(1f + MathF.Pow(2, -9)), BitConverter.ToHalf(act, 2));

        // bf16 has 7 mantissa bits: 1 + 2^-8 ties down to 1, 1 + 3·2^-8 ties up to 1 + 2^-6.
        QuantReference.QuantizeActivations(GgmlType.BF16, [1f + MathF.Pow(2, -8), 1f + 3 * MathF.Pow(2, -8)], act);
        Assert.Equal(0x3F80, BitConverter.ToUInt16(act, 0));
        Assert.Equal(0x3F82, BitConverter.ToUInt16(act, 2));
    }

    [Theory]
    [InlineData(GgmlType.Q4_0)]
    [InlineData(GgmlType.Q6_K)]
    [InlineData(GgmlType.TQ2_0)]
    public void Weight_only_types_are_not_activation_formats(GgmlType type)
    {
        var e = Assert.Throws<NotSupportedException>(() => QuantReference.QuantizeActivations(type, new float[256], new byte[1024]));
        Assert.Contains("not an activation format", e.Message);
    }

    [Fact]
    public void Every_weight_type_pairs_with_a_type_that_quantizes_activations()
    {
        foreach (var info in QuantTypes.All.Where(i => i.IsSupported))
        {
            var act = QuantReference.ActivationType(info.Type);
            Assert.NotNull(QuantTypes.Get(act).Reference!.QuantizeActivations);
        }
    }
}
