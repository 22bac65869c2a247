using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Lutra.Core.Kernels;

/// <summary>
/// The AVX-512 half widening shared by the float kernels: .NET exposes no F16C conversion, so halves are widened
/// with an exact bit manipulation.
/// </summary>
public static unsafe class FloatKernels
{
    /// <summary>
    /// 16 IEEE halves → floats, exactly: exponent and mantissa shifted into float position and re-biased by adding
    /// 112 to the exponent, which is exact for normal halves; a subnormal half m·2⁻²⁴ comes out as 2⁻¹⁵·(1 + m/1024),
    /// and twice that minus 2⁻¹⁴ is exact. Infinities and NaNs get the all-ones float exponent.
    /// <para>
    /// No step sees a denormal float. The former conversion scaled by 2¹¹² (<c>magnitude · 2⁻¹¹² · 2¹¹²</c>), so a
    /// subnormal half became a denormal multiplicand, and Intel cores take a microcode assist on every denormal
    /// input of a multiply or FMA (measured on an Intel Xeon, family 6 model 207: 0.27 % denormal inputs, the share
    /// of subnormal halves in a random-weight F16 model, made an FMA stream 2.7x slower; AMD's Zen 4 and 5 pay
    /// nothing).
    /// </para>
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> HalfToSingle(Vector256<ushort> h)
    {
        var bits = Avx512F.ConvertToVector512UInt32(h);
        var sign = Vector512.ShiftLeft(bits & Vector512.Create(0x8000u), 16);
        var magnitude = bits & Vector512.Create(0x7FFFu);
        var shifted = Vector512.ShiftLeft(magnitude, 13);
        var rebiased = (shifted + Vector512.Create(112u << 23)).AsSingle();
        var subnormal = Vector512.LessThan(magnitude, Vector512.Create(0x0400u)).AsSingle();
        var small = Avx512F.FusedMultiplyAdd(rebiased, Vector512.Create(2f), Vector512.Create(-TwoToMinus14));
        var special = Vector512.GreaterThanOrEqual(magnitude, Vector512.Create(0x7C00u)).AsSingle();
        var infNan = (shifted | Vector512.Create(0x7F800000u)).AsSingle();
        var value = Vector512.ConditionalSelect(special, infNan, Vector512.ConditionalSelect(subnormal, small, rebiased));
        return (value.AsUInt32() | sign).AsSingle();
    }

    /// <summary>
    /// 16 finite halves (as the int16 bit patterns a tile stores) → floats, exactly, in fewer steps than
    /// <see cref="HalfToSingle"/>: the sign-extended pattern shifted left by 13 leaves the sign in bit 31 and
    /// exponent and mantissa in float position; adding 112 to the exponent cannot carry into the sign. Subnormal
    /// halves as in <see cref="HalfToSingle"/>, with 2⁻¹⁴ carrying the half's sign. Infinities and NaNs come out as
    /// finite garbage: callers refuse them first.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> FiniteHalfToSingle(Vector256<short> h)
    {
        var t = Avx512F.ShiftLeftLogical(Avx512F.ConvertToVector512Int32(h), 13) & Vector512.Create(unchecked((int)0x8FFF_E000));
        var rebiased = (t + Vector512.Create(112 << 23)).AsSingle();
        var subnormal = Vector512.Equals(t & Vector512.Create(0x0F80_0000), Vector512<int>.Zero).AsSingle();
        var offset = ((t & Vector512.Create(int.MinValue)) | Vector512.Create(TwoToMinus14Bits)).AsSingle();
        return Vector512.ConditionalSelect(subnormal, Avx512F.FusedMultiplySubtract(rebiased, Vector512.Create(2f), offset), rebiased);
    }

    private const float TwoToMinus14 = 1f / 16384;
    private const int TwoToMinus14Bits = 113 << 23;
}
