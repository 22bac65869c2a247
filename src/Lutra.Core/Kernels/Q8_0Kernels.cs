using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Lutra.Core.Kernels;

/// <summary>
/// Q8_0 activation quantization and the Q8_0 / Q4_0 weight dot products against Q8_0 activations.
/// Block layouts (formats.md §2.3): Q8_0 = f16 d + 32 × int8; Q4_0 = f16 d + 16 bytes, low nibbles are
/// elements 0..15 and high nibbles 16..31, value (q − 8)·d. Integer block sums are exact in every variant;
/// only the float combination across blocks differs in order from the scalar reference.
/// </summary>
public static unsafe class Q8_0Kernels
{
    public const int BlockSize = 32;
    public const int Q8_0BlockBytes = 34;
    public const int Q4_0BlockBytes = 18;

    /// <summary>
    /// Quantizes <paramref name="n"/> floats to Q8_0 blocks exactly as llama.cpp's x86 build does: d = amax/127
    /// stored as f16, q = round-half-even(x · (127/amax)). Bit-identical to the scalar reference.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void QuantizeRowVector128(float* x, byte* dst, int n)
    {
        for (var b = 0; b < n / BlockSize; b++, x += BlockSize, dst += Q8_0BlockBytes)
            QuantizeBlock128(x, dst);
    }

    /// <inheritdoc cref="QuantizeRowVector128"/>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void QuantizeRowAvx512(float* x, byte* dst, int n)
    {
        for (var b = 0; b < n / BlockSize; b++, x += BlockSize, dst += Q8_0BlockBytes)
            QuantizeBlock512(x, dst);
    }

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

    // int8 × int8 → int32 lanes without VNNI: |w| (unsigned) times a·sign(w) (signed) with vpmaddubsw,
    // then pairs of int16 summed to int32 with vpmaddwd against ones. |w| ≤ 128 and |a| ≤ 127 keep the
    // int16 pair sums ≤ 2·128·127 = 32512, so nothing saturates.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> DotInt8x32(Vector256<sbyte> w, Vector256<sbyte> a)
    {
        var absW = Avx2.Abs(w);
        var signedA = Avx2.Sign(a, w);
        var pairs = Avx2.MultiplyAddAdjacent(absW, signedA);
        return Avx2.MultiplyAddAdjacent(pairs, Vector256<short>.One);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float DotQ8_0Avx2(byte* w, byte* a, int n)
    {
        var blocks = n / BlockSize;
        var acc = Vector256<float>.Zero;
        for (var b = 0; b < blocks; b++, w += Q8_0BlockBytes, a += Q8_0BlockBytes)
        {
            var sumi = DotInt8x32(Vector256.Load((sbyte*)(w + 2)), Vector256.Load((sbyte*)(a + 2)));
            var d = Vector256.Create(HalfLookup.ToSingle(w) * HalfLookup.ToSingle(a));
            acc = Fma.MultiplyAdd(Vector256.ConvertToSingle(sumi), d, acc);
        }
        return Vector256.Sum(acc);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<sbyte> UnpackQ4_0(byte* qs)
    {
        // 16 bytes → 32 signed values in element order: low nibbles (0..15) then high nibbles (16..31), minus 8.
        var bytes = Vector128.Load(qs);
        var lo = bytes & Vector128.Create((byte)0x0F);
        var hi = Vector128.ShiftRightLogical(bytes.AsUInt16(), 4).AsByte() & Vector128.Create((byte)0x0F);
        return (Vector256.Create(lo, hi).AsSByte() - Vector256.Create((sbyte)8));
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float DotQ4_0Avx2(byte* w, byte* a, int n)
    {
        var blocks = n / BlockSize;
        var acc = Vector256<float>.Zero;
        for (var b = 0; b < blocks; b++, w += Q4_0BlockBytes, a += Q8_0BlockBytes)
        {
            var sumi = DotInt8x32(UnpackQ4_0(w + 2), Vector256.Load((sbyte*)(a + 2)));
            var d = Vector256.Create(HalfLookup.ToSingle(w) * HalfLookup.ToSingle(a));
            acc = Fma.MultiplyAdd(Vector256.ConvertToSingle(sumi), d, acc);
        }
        return Vector256.Sum(acc);
    }
}
