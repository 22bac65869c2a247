using System.Numerics;
using System.Runtime.CompilerServices;

namespace Lutra.Core.Kernels;

/// <summary>
/// f32 → IEEE half with round-to-nearest-even, bit for bit what the <see cref="Half"/> cast gives (.NET has no
/// F16C conversion, and the software cast costs tens of cycles per value), over whole vectors.
/// </summary>
public static unsafe class HalfRounding
{
    /// <summary>The half bits of each lane, in the low 16 bits of its uint.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector<uint> ToHalfBits(Vector<float> x)
    {
        var bits = x.As<float, uint>();
        var sign = Vector.ShiftRightLogical(bits & new Vector<uint>(0x8000_0000u), 16);
        var magnitude = bits & new Vector<uint>(0x7FFF_FFFFu);
        // Normals: re-bias the exponent (127 → 15) and round the 13 dropped mantissa bits to even; a carry may
        // reach the exponent, up to infinity, which is also where everything from 65520 on is clamped to.
        var normal = Vector.ShiftRightLogical(magnitude - new Vector<uint>(0x3800_0000u) + new Vector<uint>(0x0FFFu)
            + (Vector.ShiftRightLogical(magnitude, 13) & Vector<uint>.One), 13);
        normal = Vector.Min(normal, new Vector<uint>(0x7C00u));
        // Below 2⁻¹⁴: adding 0.5 rounds to a multiple of 2⁻²⁴ (the ulp of 0.5), the half subnormal step, and the
        // mantissa difference counts the steps (1024 steps is the smallest normal, 0x0400, as it should be).
        var subnormal = (magnitude.As<uint, float>() + new Vector<float>(0.5f)).As<float, uint>() - new Vector<uint>(0x3F00_0000u);
        var nan = new Vector<uint>(0x7E00u) | (Vector.ShiftRightLogical(magnitude, 13) & new Vector<uint>(0x03FFu));
        var result = Vector.ConditionalSelect(Vector.LessThan(magnitude, new Vector<uint>(0x3880_0000u)), subnormal, normal);
        result = Vector.ConditionalSelect(Vector.GreaterThan(magnitude, new Vector<uint>(0x7F80_0000u)), nan, result);
        return result | sign;
    }

    /// <summary>
    /// Rounds floats to the nearest f16 value (ties to even), as (float)(Half)x does,
    /// on the magnitude: mantissa rounding to 10 bits for f16 normals, infinity from 65520 on; rounding to a multiple
    /// of 2⁻²⁴ (through an add of 0.5) for subnormals; infinities and NaNs pass through.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector<float> RoundToHalf(Vector<float> x)
    {
        var bits = x.As<float, int>();
        var sign = bits & new Vector<int>(int.MinValue);
        var magnitude = bits ^ sign;
        var normal = (magnitude + new Vector<int>(0x0FFF) + ((magnitude >> 13) & Vector<int>.One)) & new Vector<int>(unchecked((int)0xFFFFE000u));
        normal = Vector.ConditionalSelect(Vector.GreaterThanOrEqual(normal, new Vector<int>(0x47800000)), new Vector<int>(0x7F800000), normal); // ≥ 2^16
        var subnormal = (magnitude.As<int, float>() + new Vector<float>(0.5f) - new Vector<float>(0.5f)).As<float, int>();
        var rounded = Vector.ConditionalSelect(Vector.LessThan(magnitude, new Vector<int>(0x38800000)), subnormal, normal); // < 2^-14
        rounded = Vector.ConditionalSelect(Vector.GreaterThanOrEqual(magnitude, new Vector<int>(0x7F800000)), magnitude, rounded);
        return (rounded | sign).As<int, float>();
    }

    /// <summary><paramref name="count"/> floats → halves (as their bits).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void ToHalf(float* src, ushort* dst, int count)
    {
        var i = 0;
        if (Vector.IsHardwareAccelerated && KernelIsa.Selected != InstructionSet.Scalar)
        {
            var width = Vector<float>.Count;
            for (; i + 2 * width <= count; i += 2 * width)
            {
                var low = ToHalfBits(Vector.Load(src + i));
                var high = ToHalfBits(Vector.Load(src + i + width));
                Vector.Narrow(low, high).Store(dst + i);
            }
        }
        for (; i < count; i++)
            dst[i] = BitConverter.HalfToUInt16Bits((Half)src[i]);
    }
}
