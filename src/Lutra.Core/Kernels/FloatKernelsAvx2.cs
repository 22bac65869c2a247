using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Lutra.Core.Kernels;

/// <summary>
/// AVX2 + FMA siblings of <see cref="FloatKernels"/>: F32·F32, F16·F16 and BF16·BF16 row dots, two accumulators
/// to cover the FMA latency. Halves are widened with the same exact bit manipulation (.NET exposes no F16C).
/// </summary>
public static unsafe class FloatKernelsAvx2
{
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public static float DotF32(byte* w, byte* a, int n)
    {
        var pw = (float*)w;
        var pa = (float*)a;
        var acc0 = Vector256<float>.Zero;
        var acc1 = Vector256<float>.Zero;
        var i = 0;
        for (; i + 16 <= n; i += 16)
        {
            acc0 = Fma.MultiplyAdd(Vector256.Load(pw + i), Vector256.Load(pa + i), acc0);
            acc1 = Fma.MultiplyAdd(Vector256.Load(pw + i + 8), Vector256.Load(pa + i + 8), acc1);
        }
        var sum = Vector256.Sum(acc0 + acc1);
        for (; i < n; i++)
            sum += pw[i] * pa[i];
        return sum;
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public static float DotF16(byte* w, byte* a, int n)
    {
        var pw = (ushort*)w;
        var pa = (ushort*)a;
        var acc0 = Vector256<float>.Zero;
        var acc1 = Vector256<float>.Zero;
        var i = 0;
        for (; i + 16 <= n; i += 16)
        {
            acc0 = Fma.MultiplyAdd(HalfToSingle(Vector128.Load(pw + i)), HalfToSingle(Vector128.Load(pa + i)), acc0);
            acc1 = Fma.MultiplyAdd(HalfToSingle(Vector128.Load(pw + i + 8)), HalfToSingle(Vector128.Load(pa + i + 8)), acc1);
        }
        var sum = Vector256.Sum(acc0 + acc1);
        for (; i < n; i++)
            sum += HalfLookup.ToSingle((byte*)(pw + i)) * HalfLookup.ToSingle((byte*)(pa + i));
        return sum;
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public static float DotBF16(byte* w, byte* a, int n)
    {
        var pw = (ushort*)w;
        var pa = (ushort*)a;
        var acc0 = Vector256<float>.Zero;
        var acc1 = Vector256<float>.Zero;
        var i = 0;
        for (; i + 16 <= n; i += 16)
        {
            acc0 = Fma.MultiplyAdd(BFloatToSingle(Vector128.Load(pw + i)), BFloatToSingle(Vector128.Load(pa + i)), acc0);
            acc1 = Fma.MultiplyAdd(BFloatToSingle(Vector128.Load(pw + i + 8)), BFloatToSingle(Vector128.Load(pa + i + 8)), acc1);
        }
        var sum = Vector256.Sum(acc0 + acc1);
        for (; i < n; i++)
            sum += BitConverter.Int32BitsToSingle(pw[i] << 16) * BitConverter.Int32BitsToSingle(pa[i] << 16);
        return sum;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> BFloatToSingle(Vector128<ushort> h) => Vector256.ShiftLeft(Avx2.ConvertToVector256Int32(h).AsUInt32(), 16).AsSingle();

    /// <summary>8 IEEE halves → floats, exactly (the method of <see cref="FloatKernels.HalfToSingle"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> HalfToSingle(Vector128<ushort> h)
    {
        // vpmovzxwd straight from the register (Vector256.Create(h, h) would go through a stack temporary).
        var bits = Avx2.ConvertToVector256Int32(h).AsUInt32();
        var sign = Vector256.ShiftLeft(bits & Vector256.Create(0x8000u), 16);
        var magnitude = bits & Vector256.Create(0x7FFFu);
        var shifted = Vector256.ShiftLeft(magnitude, 13);
        var rebiased = (shifted + Vector256.Create(112u << 23)).AsSingle();
        var subnormal = Vector256.LessThan(magnitude, Vector256.Create(0x0400u)).AsSingle();
        var small = rebiased + rebiased - Vector256.Create(1f / 16384); // both steps exact
        var special = Vector256.GreaterThanOrEqual(magnitude, Vector256.Create(0x7C00u)).AsSingle();
        var infNan = (shifted | Vector256.Create(0x7F800000u)).AsSingle();
        var value = Vector256.ConditionalSelect(special, infNan, Vector256.ConditionalSelect(subnormal, small, rebiased));
        return (value.AsUInt32() | sign).AsSingle();
    }
}

/// <summary>Portable Vector128 siblings of <see cref="FloatKernels"/>.</summary>
public static unsafe class FloatKernelsVector128
{
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public static float DotF32(byte* w, byte* a, int n)
    {
        var pw = (float*)w;
        var pa = (float*)a;
        var acc0 = Vector128<float>.Zero;
        var acc1 = Vector128<float>.Zero;
        var i = 0;
        for (; i + 8 <= n; i += 8)
        {
            acc0 = Vector128.MultiplyAddEstimate(Vector128.Load(pw + i), Vector128.Load(pa + i), acc0);
            acc1 = Vector128.MultiplyAddEstimate(Vector128.Load(pw + i + 4), Vector128.Load(pa + i + 4), acc1);
        }
        var sum = Vector128.Sum(acc0 + acc1);
        for (; i < n; i++)
            sum += pw[i] * pa[i];
        return sum;
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public static float DotF16(byte* w, byte* a, int n)
    {
        var pw = (ushort*)w;
        var pa = (ushort*)a;
        var acc0 = Vector128<float>.Zero;
        var acc1 = Vector128<float>.Zero;
        var i = 0;
        for (; i + 8 <= n; i += 8)
        {
            var wh = Vector128.Load(pw + i);
            var ah = Vector128.Load(pa + i);
            acc0 = Vector128.MultiplyAddEstimate(HalfToSingle(Vector128.WidenLower(wh)), HalfToSingle(Vector128.WidenLower(ah)), acc0);
            acc1 = Vector128.MultiplyAddEstimate(HalfToSingle(Vector128.WidenUpper(wh)), HalfToSingle(Vector128.WidenUpper(ah)), acc1);
        }
        var sum = Vector128.Sum(acc0 + acc1);
        for (; i < n; i++)
            sum += HalfLookup.ToSingle((byte*)(pw + i)) * HalfLookup.ToSingle((byte*)(pa + i));
        return sum;
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public static float DotBF16(byte* w, byte* a, int n)
    {
        var pw = (ushort*)w;
        var pa = (ushort*)a;
        var acc0 = Vector128<float>.Zero;
        var acc1 = Vector128<float>.Zero;
        var i = 0;
        for (; i + 8 <= n; i += 8)
        {
            var wh = Vector128.Load(pw + i);
            var ah = Vector128.Load(pa + i);
            acc0 = Vector128.MultiplyAddEstimate(BFloatToSingle(Vector128.WidenLower(wh)), BFloatToSingle(Vector128.WidenLower(ah)), acc0);
            acc1 = Vector128.MultiplyAddEstimate(BFloatToSingle(Vector128.WidenUpper(wh)), BFloatToSingle(Vector128.WidenUpper(ah)), acc1);
        }
        var sum = Vector128.Sum(acc0 + acc1);
        for (; i < n; i++)
            sum += BitConverter.Int32BitsToSingle(pw[i] << 16) * BitConverter.Int32BitsToSingle(pa[i] << 16);
        return sum;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<float> BFloatToSingle(Vector128<uint> bits) => Vector128.ShiftLeft(bits, 16).AsSingle();

    /// <summary>4 IEEE halves (zero-extended to u32) → floats, exactly (the method of <see cref="FloatKernels.HalfToSingle"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> HalfToSingle(Vector128<uint> bits)
    {
        var sign = Vector128.ShiftLeft(bits & Vector128.Create(0x8000u), 16);
        var magnitude = bits & Vector128.Create(0x7FFFu);
        var shifted = Vector128.ShiftLeft(magnitude, 13);
        var rebiased = (shifted + Vector128.Create(112u << 23)).AsSingle();
        var subnormal = Vector128.LessThan(magnitude, Vector128.Create(0x0400u)).AsSingle();
        var small = rebiased + rebiased - Vector128.Create(1f / 16384); // both steps exact
        var special = Vector128.GreaterThanOrEqual(magnitude, Vector128.Create(0x7C00u)).AsSingle();
        var infNan = (shifted | Vector128.Create(0x7F800000u)).AsSingle();
        var value = Vector128.ConditionalSelect(special, infNan, Vector128.ConditionalSelect(subnormal, small, rebiased));
        return (value.AsUInt32() | sign).AsSingle();
    }
}
