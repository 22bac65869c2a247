using System.Numerics;
using Lutra.Core.Kernels;

namespace Lutra.Core.Tests;

public unsafe class HalfRoundingTests
{
    [Fact]
    public void Every_float_bit_pattern_in_a_dense_stride_rounds_as_the_Half_cast_does()
    {
        // Stride 97 over all 2³² patterns (44 M values) hits every exponent, both signs, the tie cases' neighbours,
        // subnormals of both formats, the overflow edge and NaN payloads; the edges themselves are added below.
        var width = Vector<float>.Count;
        var lanes = new float[width];
        var specials = new List<uint>();
        foreach (var edge in new uint[] { 0, 0x3380_0000, 0x3380_0001, 0x337F_FFFF, 0x3880_0000, 0x387F_FFFF, 0x477F_EFFF, 0x477F_F000,
                     0x477F_F001, 0x4780_0000, 0x7F80_0000, 0x7F80_0001, 0x7FC0_0000, 0x7FFF_FFFF, 0x3800_1000, 0x3800_3000, 0x3C00_1000 })
        {
            specials.Add(edge);
            specials.Add(edge | 0x8000_0000);
        }
        var failures = 0;
        void Check(ReadOnlySpan<uint> patterns)
        {
            for (var l = 0; l < width; l++)
                lanes[l] = BitConverter.UInt32BitsToSingle(patterns[l]);
            var h = HalfRounding.ToHalfBits(new Vector<float>(lanes));
            for (var l = 0; l < width; l++)
            {
                var expected = BitConverter.HalfToUInt16Bits((Half)lanes[l]);
                if (h[l] != expected && failures++ < 5)
                    Assert.Fail($"0x{patterns[l]:X8} ({lanes[l]:R}) → 0x{h[l]:X4}, the cast gives 0x{expected:X4}");
            }
        }
        var chunk = new uint[width];
        for (var i = 0; i < specials.Count; i += width)
        {
            for (var l = 0; l < width; l++)
                chunk[l] = specials[Math.Min(i + l, specials.Count - 1)];
            Check(chunk);
        }
        for (ulong p = 0; p < 1UL << 32; p += (ulong)(97 * width))
        {
            for (var l = 0; l < width; l++)
                chunk[l] = (uint)(p + (ulong)(97 * l));
            Check(chunk);
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(31)]
    [InlineData(64)]
    [InlineData(1027)]
    public void Rows_of_any_length_convert_like_the_cast(int n)
    {
        var rnd = new Random(n);
        var x = Enumerable.Range(0, n).Select(_ => (float)((rnd.NextDouble() - 0.5) * Math.Pow(2, rnd.Next(-30, 20)))).ToArray();
        var h = new ushort[n + 1];
        fixed (float* px = x)
        fixed (ushort* ph = h)
            HalfRounding.ToHalf(px, ph, n);
        for (var i = 0; i < n; i++)
            Assert.Equal(BitConverter.HalfToUInt16Bits((Half)x[i]), h[i]);
        Assert.Equal(0, h[n]);
    }

    [Fact]
    public void RoundToHalf_equals_the_Half_conversion()
    {
        var rng = new Random(3);
        var values = new List<float>
        {
            0, -0f, 1, -1, 65504, 65519.996f, 65520, -65520, 65536, 1e30f, float.MaxValue, float.MinValue,
            float.PositiveInfinity, float.NegativeInfinity, float.NaN, float.Epsilon, -float.Epsilon,
            6.103515625e-05f,          // smallest f16 normal
            6.1035153e-05f,            // just below it
            5.9604645e-08f * 1.5f,     // a subnormal tie
            2.9802322e-08f,            // half the smallest f16 subnormal: a tie to 0
            -2.9802326e-08f,           // just past it
            1f + 1f / 2048,            // a normal tie (rounds to even)
        };
        // Every f16 value, the midpoint to its successor (a tie) and the floats either side of the midpoint.
        for (var h = 0; h < 0x7C00; h++)
        {
            var lower = (float)BitConverter.UInt16BitsToHalf((ushort)h);
            var upper = (float)BitConverter.UInt16BitsToHalf((ushort)(h + 1));
            var middle = (float)(((double)lower + upper) / 2);
            foreach (var x in new[] { lower, middle, MathF.BitDecrement(middle), MathF.BitIncrement(middle) })
            {
                values.Add(x);
                values.Add(-x);
            }
        }
        // Random bit patterns: every exponent, both signs, NaN payloads.
        for (var i = 0; i < 100_000; i++)
            values.Add(BitConverter.Int32BitsToSingle(rng.Next() ^ (rng.Next(2) << 31)));
        // Uniform exponents from 2^-30 to 1, the softmax weights' range.
        for (var i = 0; i < 4096; i++)
            values.Add((float)Math.Pow(2, -30 * rng.NextDouble()));
        var width = Vector<float>.Count;
        while (values.Count % width != 0)
            values.Add(0.5f);
        var all = values.ToArray();
        for (var i = 0; i < all.Length; i += width)
        {
            var rounded = HalfRounding.RoundToHalf(new Vector<float>(all.AsSpan(i, width)));
            for (var l = 0; l < width; l++)
            {
                var expected = (float)(Half)all[i + l];
                Assert.True(expected.Equals(rounded[l]) && float.IsNegative(expected) == float.IsNegative(rounded[l]),
                    $"(float)(Half){all[i + l]:R} (0x{BitConverter.SingleToInt32Bits(all[i + l]):X8}) = {expected:R}, got {rounded[l]:R}");
            }
        }
    }
}
