using System.Runtime.CompilerServices;

namespace Lutra.Core.Quants;

/// <summary>Scalar conversions and roundings shared by the reference kernels, each matching ggml bit for bit.</summary>
internal static class QuantMath
{
    /// <summary>
    /// ggml's <c>nearest_int</c>: adding 1.5·2²³ pushes the value's integer part into the low mantissa bits, and
    /// the addition itself rounds half to even. Valid for |x| ≤ 2²² − 1 (as in ggml; ported with the same trick
    /// so even out-of-range inputs give ggml's bits).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int NearestInt(float x)
    {
        var shifted = x + 12582912f;
        return (BitConverter.SingleToInt32Bits(shifted) & 0x007fffff) - 0x00400000;
    }

    /// <summary>C's <c>roundf</c> / <c>lroundf</c>: halves round away from zero.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int RoundAway(float x) => (int)MathF.Round(x, MidpointRounding.AwayFromZero);

    /// <summary>Round half to even, as the x86 SIMD quantizers do (<c>_MM_ROUND_NEAREST</c>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int RoundEven(float x) => (int)MathF.Round(x, MidpointRounding.ToEven);

    /// <summary>GGML_FP32_TO_FP16: round to nearest even (C#'s conversion does the same).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Half ToHalf(float x) => (Half)x;

    /// <summary>GGML_FP16_TO_FP32: exact.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float ToFloat(Half h) => (float)h;

    /// <summary>Signed value of the first element with the largest magnitude (strict <c>&gt;</c>), and that magnitude.</summary>
    public static float SignedAbsMax(ReadOnlySpan<float> x, out float amax)
    {
        var max = 0f;
        amax = 0f;
        foreach (var v in x)
        {
            var av = MathF.Abs(v);
            if (av > amax)
            {
                amax = av;
                max = v;
            }
        }
        return max;
    }

    /// <summary>max |x| (only the magnitude).</summary>
    public static float AbsMax(ReadOnlySpan<float> x)
    {
        var amax = 0f;
        foreach (var v in x)
            amax = MathF.Max(amax, MathF.Abs(v));
        return amax;
    }
}
