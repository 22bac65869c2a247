using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Lutra.Core.Quants;

namespace Lutra.Core.Kernels;

/// <summary>
/// F32, F16 and BF16 weights at AVX-512. Activations are converted to the weight's type (llama.cpp's vec_dot_type)
/// with vector conversions that equal the scalar ones bit for bit, and for F16/BF16 the sidecar keeps those rounded
/// values widened back to f32, so a row step converts only the weights. The GEMM tile (four tokens × two rows)
/// converts each 16-weight chunk once for four tokens.
/// </summary>
internal sealed unsafe class FloatMatVecAvx512<TFormat>() : MatVecKernel(TFormat.Type, InstructionSet.Avx512, "AVX-512 f32 FMA, 4 tokens x 2 rows")
    where TFormat : struct, IFloatFormatAvx512
{
    private const int Width = 16;

    private bool Widened => WeightType != GgmlType.F32;

    public override int ActivationBytes(int n) => AlignUp(StandardActivationBytes(n)) + (Widened ? AlignUp(n * sizeof(float)) : 0);

    /// <summary>The activations as f32: the state itself for F32, else the widened sidecar.</summary>
    private float* Activations(byte* state, int n) => Widened ? (float*)(state + AlignUp(StandardActivationBytes(n))) : (float*)state;

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public override void PrepareActivations(float* x, int n, byte* state)
    {
        var wide = Activations(state, n);
        var i = 0;
        switch (WeightType)
        {
            case GgmlType.F32:
                new ReadOnlySpan<float>(x, n).CopyTo(new Span<float>(state, n));
                return;
            case GgmlType.F16:
                for (; i + Width <= n; i += Width)
                {
                    var h = FloatConversionsAvx512.FloatToHalf(Vector512.Load(x + i));
                    h.Store((ushort*)state + i);
                    FloatKernels.HalfToSingle(h).Store(wide + i);
                }
                for (; i < n; i++)
                {
                    var h = (Half)x[i];
                    ((Half*)state)[i] = h;
                    wide[i] = (float)h;
                }
                return;
            default:
                for (; i + Width <= n; i += Width)
                {
                    var b = FloatConversionsAvx512.FloatToBf16(Vector512.Load(x + i));
                    b.Store((ushort*)state + i);
                    FloatConversionsAvx512.Bf16ToSingle(b).Store(wide + i);
                }
                for (; i < n; i++)
                {
                    var b = QuantReference.FloatToBf16(x[i]);
                    ((ushort*)state)[i] = b;
                    wide[i] = BitConverter.Int32BitsToSingle(b << 16);
                }
                return;
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public override void MatVec(byte* weights, long rowBytes, int rows, byte* state, int n, float* y)
    {
        var a = Activations(state, n);
        // 32 (f16, bf16) or 64 (f32) bytes per step: one prefetch each covers the stream.
        var stepBytes = (int)QuantTypes.Get(TFormat.Type).RowBytes(Width);
        for (var r = 0; r < rows; r++)
        {
            var w = weights + r * rowBytes;
            // One accumulator, the same order as the GEMM tile: a token gives bit-identical results alone or in a
            // batch. One FMA chain still outruns memory for a streamed weight row.
            Vector512<float> acc = default;
            var i = 0;
            for (var ahead = w + InterleavedSteps.PrefetchDistance; i + Width <= n; i += Width, ahead += stepBytes)
            {
                Sse.Prefetch1(ahead);
                acc = Avx512F.FusedMultiplyAdd(TFormat.Load(w, i), Vector512.Load(a + i), acc);
            }
            var sum = Vector512.Sum(acc);
            for (; i < n; i++)
                sum += TFormat.LoadOne(w, i) * a[i];
            y[r] = sum;
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public override void MatMat(byte* weights, long rowBytes, int rows, byte* states, int stateStride, int tokens, int n, float* y, long yStride)
    {
        var t = 0;
        for (; t + 4 <= tokens; t += 4)
        {
            var a0 = Activations(states + (long)t * stateStride, n);
            var a1 = Activations(states + (long)(t + 1) * stateStride, n);
            var a2 = Activations(states + (long)(t + 2) * stateStride, n);
            var a3 = Activations(states + (long)(t + 3) * stateStride, n);
            for (var r = 0; r < rows; r += 2)
            {
                var w0 = weights + r * rowBytes;
                // An odd last row runs as a pair with itself: both halves compute (and store) the same value.
                var w1 = r + 1 < rows ? w0 + rowBytes : w0;
                Vector512<float> c00 = default, c01 = default, c02 = default, c03 = default;
                Vector512<float> c10 = default, c11 = default, c12 = default, c13 = default;
                var i = 0;
                for (; i + Width <= n; i += Width)
                {
                    var x0 = TFormat.Load(w0, i);
                    var x1 = TFormat.Load(w1, i);
                    var a = Vector512.Load(a0 + i);
                    c00 = Avx512F.FusedMultiplyAdd(x0, a, c00);
                    c10 = Avx512F.FusedMultiplyAdd(x1, a, c10);
                    a = Vector512.Load(a1 + i);
                    c01 = Avx512F.FusedMultiplyAdd(x0, a, c01);
                    c11 = Avx512F.FusedMultiplyAdd(x1, a, c11);
                    a = Vector512.Load(a2 + i);
                    c02 = Avx512F.FusedMultiplyAdd(x0, a, c02);
                    c12 = Avx512F.FusedMultiplyAdd(x1, a, c12);
                    a = Vector512.Load(a3 + i);
                    c03 = Avx512F.FusedMultiplyAdd(x0, a, c03);
                    c13 = Avx512F.FusedMultiplyAdd(x1, a, c13);
                }
                float s00 = Vector512.Sum(c00), s01 = Vector512.Sum(c01), s02 = Vector512.Sum(c02), s03 = Vector512.Sum(c03);
                float s10 = Vector512.Sum(c10), s11 = Vector512.Sum(c11), s12 = Vector512.Sum(c12), s13 = Vector512.Sum(c13);
                for (; i < n; i++)
                {
                    var v0 = TFormat.LoadOne(w0, i);
                    var v1 = TFormat.LoadOne(w1, i);
                    s00 += v0 * a0[i];
                    s01 += v0 * a1[i];
                    s02 += v0 * a2[i];
                    s03 += v0 * a3[i];
                    s10 += v1 * a0[i];
                    s11 += v1 * a1[i];
                    s12 += v1 * a2[i];
                    s13 += v1 * a3[i];
                }
                var yr = y + t * yStride + r;
                yr[0] = s00;
                yr[yStride] = s01;
                yr[2 * yStride] = s02;
                yr[3 * yStride] = s03;
                if (r + 1 < rows)
                {
                    yr[1] = s10;
                    yr[yStride + 1] = s11;
                    yr[2 * yStride + 1] = s12;
                    yr[3 * yStride + 1] = s13;
                }
            }
        }
        for (; t < tokens; t++)
            MatVec(weights, rowBytes, rows, states + (long)t * stateStride, n, y + t * yStride);
    }
}

/// <summary>The AVX-512 float conversions, each equal to its scalar counterpart bit for bit.</summary>
public static class FloatConversionsAvx512
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Bf16ToSingle(Vector256<ushort> b) =>
        Vector512.ShiftLeft(Avx512F.ConvertToVector512UInt32(b), 16).AsSingle();

    /// <summary>
    /// 16 floats → IEEE halves with round-to-nearest-even, as (Half)x: normals round the mantissa to 10 bits, values
    /// below the smallest f16 normal round to a multiple of 2⁻²⁴ through an add of 0.5 (whose ulp is 2⁻²⁴), too
    /// large values become ±∞ and NaN stays a quiet NaN.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<ushort> FloatToHalf(Vector512<float> x)
    {
        var bits = x.AsUInt32();
        var sign = Vector512.ShiftRightLogical(bits, 16) & Vector512.Create(0x8000u);
        var abs = bits & Vector512.Create(0x7FFFFFFFu);
        var normal = Vector512.ShiftRightLogical(abs - Vector512.Create(0x38000000u) + Vector512.Create(0x0FFFu)
            + (Vector512.ShiftRightLogical(abs, 13) & Vector512.Create(1u)), 13);
        normal = Vector512.Min(normal, Vector512.Create(0x7C00u));
        var subnormal = (abs.AsSingle() + Vector512.Create(0.5f)).AsUInt32() - Vector512.Create(0x3F000000u);
        var h = Vector512.ConditionalSelect(Vector512.LessThan(abs, Vector512.Create(0x38800000u)), subnormal, normal);
        h = Vector512.ConditionalSelect(Vector512.GreaterThan(abs, Vector512.Create(0x7F800000u)), Vector512.Create(0x7E00u), h);
        return Avx512F.ConvertToVector256UInt16(h | sign);
    }

    /// <summary>16 floats → bf16 with round-to-nearest-even; NaN stays a quiet NaN (QuantReference.FloatToBf16).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<ushort> FloatToBf16(Vector512<float> x)
    {
        var bits = x.AsUInt32();
        var rounded = Vector512.ShiftRightLogical(bits + Vector512.Create(0x7FFFu) + (Vector512.ShiftRightLogical(bits, 16) & Vector512.Create(1u)), 16);
        var nan = Vector512.ShiftRightLogical(bits, 16) | Vector512.Create(64u);
        var isNan = Vector512.GreaterThan(bits & Vector512.Create(0x7FFFFFFFu), Vector512.Create(0x7F800000u));
        return Avx512F.ConvertToVector256UInt16(Vector512.ConditionalSelect(isNan, nan, rounded));
    }
}

/// <summary>How a float weight type loads as f32 at AVX-512 (one kernel instantiation per type, so no type test runs in the loop).</summary>
internal unsafe interface IFloatFormatAvx512
{
    static abstract GgmlType Type { get; }

    /// <summary>Sixteen weights from element <paramref name="i"/> as f32.</summary>
    static abstract Vector512<float> Load(byte* w, int i);

    static abstract float LoadOne(byte* w, int i);
}

internal readonly unsafe struct F32Avx512 : IFloatFormatAvx512
{
    public static GgmlType Type => GgmlType.F32;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Load(byte* w, int i) => Vector512.Load((float*)w + i);

    public static float LoadOne(byte* w, int i) => ((float*)w)[i];
}

internal readonly unsafe struct F16Avx512 : IFloatFormatAvx512
{
    public static GgmlType Type => GgmlType.F16;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Load(byte* w, int i) => FloatKernels.HalfToSingle(Vector256.Load((ushort*)w + i));

    public static float LoadOne(byte* w, int i) => (float)((Half*)w)[i];
}

internal readonly unsafe struct BF16Avx512 : IFloatFormatAvx512
{
    public static GgmlType Type => GgmlType.BF16;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Load(byte* w, int i) => FloatConversionsAvx512.Bf16ToSingle(Vector256.Load((ushort*)w + i));

    public static float LoadOne(byte* w, int i) => BitConverter.Int32BitsToSingle(((ushort*)w)[i] << 16);
}
