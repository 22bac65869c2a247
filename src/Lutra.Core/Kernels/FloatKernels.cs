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
    /// 16 IEEE halves → floats, exactly: shifting exponent and mantissa into float position and scaling by
    /// 2^112 re-biases normals and subnormals alike (a power-of-two scale is exact); infinities and NaNs get
    /// the all-ones float exponent.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> HalfToSingle(Vector256<ushort> h)
    {
        var bits = Avx512F.ConvertToVector512UInt32(h);
        var sign = Vector512.ShiftLeft(bits & Vector512.Create(0x8000u), 16);
        var magnitude = bits & Vector512.Create(0x7FFFu);
        var scaled = Vector512.ShiftLeft(magnitude, 13).AsSingle() * Vector512.Create(5.192296858534828e33f); // 2^112
        var special = Vector512.GreaterThanOrEqual(magnitude, Vector512.Create(0x7C00u));
        var infNan = (Vector512.ShiftLeft(magnitude, 13) | Vector512.Create(0x7F800000u)).AsSingle();
        return (Vector512.ConditionalSelect(special.AsSingle(), infNan, scaled).AsUInt32() | sign).AsSingle();
    }
}
