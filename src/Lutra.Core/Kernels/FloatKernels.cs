using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Lutra.Core.Kernels;

/// <summary>
/// AVX-512 dot products for float weight types: F32·F32, F16·F16 and BF16·BF16 (activations are converted
/// to the weight's type first, as llama.cpp does). .NET exposes no F16C conversion, so halves are widened
/// with an exact bit manipulation.
/// </summary>
public static unsafe class FloatKernels
{
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float DotF32Avx512(byte* w, byte* a, int n)
    {
        var pw = (float*)w;
        var pa = (float*)a;
        var acc0 = Vector512<float>.Zero;
        var acc1 = Vector512<float>.Zero;
        var i = 0;
        for (; i + 32 <= n; i += 32)
        {
            acc0 = Avx512F.FusedMultiplyAdd(Vector512.Load(pw + i), Vector512.Load(pa + i), acc0);
            acc1 = Avx512F.FusedMultiplyAdd(Vector512.Load(pw + i + 16), Vector512.Load(pa + i + 16), acc1);
        }
        var sum = Vector512.Sum(acc0 + acc1);
        for (; i < n; i++)
            sum += pw[i] * pa[i];
        return sum;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float DotF16Avx512(byte* w, byte* a, int n)
    {
        var pw = (ushort*)w;
        var pa = (ushort*)a;
        var acc0 = Vector512<float>.Zero;
        var acc1 = Vector512<float>.Zero;
        var i = 0;
        for (; i + 32 <= n; i += 32)
        {
            acc0 = Avx512F.FusedMultiplyAdd(HalfToSingle(Vector256.Load(pw + i)), HalfToSingle(Vector256.Load(pa + i)), acc0);
            acc1 = Avx512F.FusedMultiplyAdd(HalfToSingle(Vector256.Load(pw + i + 16)), HalfToSingle(Vector256.Load(pa + i + 16)), acc1);
        }
        var sum = Vector512.Sum(acc0 + acc1);
        for (; i < n; i++)
            sum += (float)BitConverter.UInt16BitsToHalf(pw[i]) * (float)BitConverter.UInt16BitsToHalf(pa[i]);
        return sum;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float DotBF16Avx512(byte* w, byte* a, int n)
    {
        var pw = (ushort*)w;
        var pa = (ushort*)a;
        var acc = Vector512<float>.Zero;
        var i = 0;
        for (; i + 16 <= n; i += 16)
        {
            var wf = Vector512.ShiftLeft(Vector512.WidenLower(Vector512.Create(Vector256.Load(pw + i), Vector256<ushort>.Zero)).AsUInt32(), 16).AsSingle();
            var af = Vector512.ShiftLeft(Vector512.WidenLower(Vector512.Create(Vector256.Load(pa + i), Vector256<ushort>.Zero)).AsUInt32(), 16).AsSingle();
            acc = Avx512F.FusedMultiplyAdd(wf, af, acc);
        }
        var sum = Vector512.Sum(acc);
        for (; i < n; i++)
            sum += BitConverter.Int32BitsToSingle(pw[i] << 16) * BitConverter.Int32BitsToSingle(pa[i] << 16);
        return sum;
    }

    /// <summary>
    /// 16 IEEE halves → floats, exactly: shifting exponent and mantissa into float position and scaling by
    /// 2^112 re-biases normals and subnormals alike (a power-of-two scale is exact); infinities and NaNs get
    /// the all-ones float exponent.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> HalfToSingle(Vector256<ushort> h)
    {
        var bits = Vector512.WidenLower(Vector512.Create(h, Vector256<ushort>.Zero)).AsUInt32();
        var sign = Vector512.ShiftLeft(bits & Vector512.Create(0x8000u), 16);
        var magnitude = bits & Vector512.Create(0x7FFFu);
        var scaled = Vector512.ShiftLeft(magnitude, 13).AsSingle() * Vector512.Create(5.192296858534828e33f); // 2^112
        var special = Vector512.GreaterThanOrEqual(magnitude, Vector512.Create(0x7C00u));
        var infNan = (Vector512.ShiftLeft(magnitude, 13) | Vector512.Create(0x7F800000u)).AsSingle();
        return (Vector512.ConditionalSelect(special.AsSingle(), infNan, scaled).AsUInt32() | sign).AsSingle();
    }
}
