using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Lutra.Core.Kernels;

/// <summary>
/// Q8_0 activation quantization (llama.cpp x86 semantics) for the SIMD kernels; bit-identical to the reference.
/// </summary>
public static unsafe class Q8_0Kernels
{
    public const int BlockSize = 32;
    public const int Q8_0BlockBytes = 34;

    /// <summary>
    /// Quantizes <paramref name="n"/> floats to Q8_0 blocks exactly as llama.cpp's x86 build does: d = amax/127
    /// stored as f16, q = round-half-even(x · (127/amax)). Bit-identical to the scalar reference.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public static void QuantizeRowVector128(float* x, byte* dst, int n)
    {
        for (var b = 0; b < n / BlockSize; b++, x += BlockSize, dst += Q8_0BlockBytes)
            QuantizeBlock128(x, dst);
    }

    /// <inheritdoc cref="QuantizeRowVector128"/>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public static void QuantizeRowAvx512(float* x, byte* dst, int n)
    {
        for (var b = 0; b < n / BlockSize; b++, x += BlockSize, dst += Q8_0BlockBytes)
            QuantizeBlock512(x, dst);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void QuantizeBlock128(float* x, byte* dst)
    {
        var v0 = Vector128.Load(x);
        var v1 = Vector128.Load(x + 4);
        var v2 = Vector128.Load(x + 8);
        var v3 = Vector128.Load(x + 12);
        var v4 = Vector128.Load(x + 16);
        var v5 = Vector128.Load(x + 20);
        var v6 = Vector128.Load(x + 24);
        var v7 = Vector128.Load(x + 28);
        var m = Vector128.Max(Vector128.Max(Vector128.Max(Vector128.Abs(v0), Vector128.Abs(v1)), Vector128.Max(Vector128.Abs(v2), Vector128.Abs(v3))),
            Vector128.Max(Vector128.Max(Vector128.Abs(v4), Vector128.Abs(v5)), Vector128.Max(Vector128.Abs(v6), Vector128.Abs(v7))));
        var amax = MathF.Max(MathF.Max(m[0], m[1]), MathF.Max(m[2], m[3]));
        var id = Vector128.Create(amax != 0 ? 127f / amax : 0f);
        *(Half*)dst = (Half)(amax / 127f);
        var i01 = Vector128.Narrow(ToInt(v0 * id), ToInt(v1 * id));
        var i23 = Vector128.Narrow(ToInt(v2 * id), ToInt(v3 * id));
        var i45 = Vector128.Narrow(ToInt(v4 * id), ToInt(v5 * id));
        var i67 = Vector128.Narrow(ToInt(v6 * id), ToInt(v7 * id));
        Vector128.Narrow(i01, i23).Store((sbyte*)dst + 2);
        Vector128.Narrow(i45, i67).Store((sbyte*)dst + 18);

        // Round first (half-to-even), then convert: the conversion of an integral value is exact.
        static Vector128<int> ToInt(Vector128<float> v) => Vector128.ConvertToInt32(Vector128.Round(v));
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void QuantizeBlock512(float* x, byte* dst)
    {
        var v0 = Vector512.Load(x);
        var v1 = Vector512.Load(x + 16);
        var amax = Vector512.Max(Vector512.Abs(v0), Vector512.Abs(v1));
        var a8 = Vector256.Max(amax.GetLower(), amax.GetUpper());
        var a4 = Vector128.Max(a8.GetLower(), a8.GetUpper());
        var a = MathF.Max(MathF.Max(a4[0], a4[1]), MathF.Max(a4[2], a4[3]));
        var id = Vector512.Create(a != 0 ? 127f / a : 0f);
        *(Half*)dst = (Half)(a / 127f);
        var q0 = Vector512.ConvertToInt32(Vector512.Round(v0 * id));
        var q1 = Vector512.ConvertToInt32(Vector512.Round(v1 * id));
        var s = Vector512.Narrow(q0, q1); // 32 × int16, in order
        var b = Vector512.Narrow(s, s);   // low 32 bytes hold the 32 values in order
        b.GetLower().Store((sbyte*)dst + 2);
    }
}
