using System.Runtime.Intrinsics;
using Lutra.Core.Kernels;
using Lutra.Core.Quants;

namespace Lutra.Core.Tests;

/// <summary>The vector Q8_K activation quantizers against llama.cpp's reference quantizer, byte for byte.</summary>
public unsafe class Q8_KQuantizeTests
{
    public static TheoryData<string> Rows() => ["random", "ties", "zeros", "negative-max-first", "equal-magnitudes", "tiny", "huge"];

    private static float[] Row(string pattern, int n)
    {
        var rng = new Random(pattern.GetHashCode(StringComparison.Ordinal) & 0xFFFF);
        var x = new float[n];
        for (var i = 0; i < n; i++)
        {
            x[i] = pattern switch
            {
                // Multiples of max/254 land exactly on .5 after scaling by 127/max: round-half-even decides.
                "ties" => (rng.Next(-254, 255) | 1) * (2.54f / 254),
                "zeros" => i / 256 % 2 == 0 ? 0f : (float)(rng.NextDouble() - 0.5),
                "negative-max-first" => i % 256 == 3 ? -5f : i % 256 == 200 ? 5f : (float)(rng.NextDouble() - 0.5),
                "equal-magnitudes" => i % 2 == 0 ? 1.5f : -1.5f,
                "tiny" => (float)(rng.NextDouble() - 0.5) * 1e-38f,
                "huge" => (float)(rng.NextDouble() - 0.5) * 3e38f,
                _ => (float)((rng.NextDouble() - 0.5) * Math.Pow(2, rng.Next(-8, 8))),
            };
        }
        if (pattern == "ties")
        {
            for (var b = 0; b < n; b += 256)
                x[b + 7] = 2.54f; // the block maximum, so iscale = −127 / 2.54
        }
        return x;
    }

    [Theory]
    [MemberData(nameof(Rows))]
    public void Vector_quantizers_equal_the_reference(string pattern)
    {
        const int n = 4 * 256;
        var x = Row(pattern, n);
        var expected = new byte[QuantReference.ActivationRowBytes(GgmlType.Q8_K, n)];
        QuantReference.QuantizeActivations(GgmlType.Q8_K, x, expected);
        var actual = new byte[expected.Length];
        fixed (float* px = x)
        fixed (byte* pa = actual)
        {
            if (Vector128.IsHardwareAccelerated)
            {
                Q8_KKernels.QuantizeRowVector128(px, pa, n);
                Assert.Equal(expected, actual);
            }
            if (KernelIsa.IsSupported(InstructionSet.Avx512))
            {
                Array.Clear(actual);
                Q8_KKernels.QuantizeRowAvx512(px, pa, n);
                Assert.Equal(expected, actual);
            }
        }
    }
}
