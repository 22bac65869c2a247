using System.Runtime.Intrinsics;
using Lutra.Core.Kernels;
using Lutra.Core.Quants;

namespace Lutra.Core.Tests;

/// <summary>The AVX-512 f32 → f16/bf16 conversions against the scalar ones, over a dense sample of every float range.</summary>
public class FloatConversionTests
{
    private static IEnumerable<float> Samples()
    {
        // Every 997th bit pattern covers all exponents (f16 normals, subnormals, overflow, infinities, NaNs) and
        // many mantissas; exact f16 ties and the edges are added explicitly.
        for (ulong bits = 0; bits <= uint.MaxValue; bits += 997)
            yield return BitConverter.UInt32BitsToSingle((uint)bits);
        foreach (var edge in new[] { 65504f, 65519.99f, 65520f, 6.1035156e-05f, 6.097555e-05f, 5.9604645e-08f, 2.9802322e-08f,
                     2.9802326e-08f, 1f + 1f / 2048, 1f + 3f / 2048, float.PositiveInfinity, float.NegativeInfinity, -0f, 0f })
        {
            yield return edge;
            yield return -edge;
        }
    }

    private static void Check(Func<Vector512<float>, Vector256<ushort>> vector, Func<float, ushort> scalar, string name)
    {
        if (!KernelIsa.IsSupported(InstructionSet.Avx512))
            Assert.Skip("this CPU has no AVX-512");
        var batch = new float[16];
        var filled = 0;
        foreach (var x in Samples())
        {
            batch[filled++] = x;
            if (filled < 16)
                continue;
            filled = 0;
            var got = vector(Vector512.Create(batch));
            for (var i = 0; i < 16; i++)
            {
                var expected = scalar(batch[i]);
                Assert.True(expected == got[i], $"{name}({batch[i]:R}, 0x{BitConverter.SingleToUInt32Bits(batch[i]):X8}): expected 0x{expected:X4}, got 0x{got[i]:X4}");
            }
        }
    }

    // NaN payloads are not part of the contract: every NaN maps to the quiet NaN of its sign on both sides.
    private static ushort HalfBits(float x) =>
        float.IsNaN(x) ? (ushort)((BitConverter.SingleToUInt32Bits(x) >> 16 & 0x8000) | 0x7E00) : BitConverter.HalfToUInt16Bits((Half)x);

    [Fact]
    public void FloatToHalf_equals_the_Half_cast() =>
        Check(FloatConversionsAvx512.FloatToHalf, HalfBits, "FloatToHalf");

    [Fact]
    public void FloatToBf16_equals_the_reference_rounding() =>
        Check(FloatConversionsAvx512.FloatToBf16, QuantReference.FloatToBf16, "FloatToBf16");
}
