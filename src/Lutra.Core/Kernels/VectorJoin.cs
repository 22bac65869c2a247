using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Lutra.Core.Kernels;

/// <summary>
/// Register-only ways to assemble wide vectors. The JIT lowers <c>Vector512.Create(lower, upper)</c> through a
/// stack temporary (a 64-byte load and store around two inserts); inside a block loop that costs more than
/// the arithmetic, so kernels use these instead.
/// </summary>
internal static class VectorJoin
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<byte> Join(Vector256<byte> lower, Vector256<byte> upper) =>
        Avx512F.InsertVector256(lower.ToVector512Unsafe(), upper, 1);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<sbyte> Join(Vector256<sbyte> lower, Vector256<sbyte> upper) =>
        Avx512F.InsertVector256(lower.ToVector512Unsafe(), upper, 1);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<short> Join(Vector256<short> lower, Vector256<short> upper) =>
        Avx512F.InsertVector256(lower.ToVector512Unsafe(), upper, 1);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<int> Join(Vector256<int> lower, Vector256<int> upper) =>
        Avx512F.InsertVector256(lower.ToVector512Unsafe(), upper, 1);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Join(Vector256<float> lower, Vector256<float> upper) =>
        Avx512F.InsertVector256(lower.ToVector512Unsafe(), upper, 1);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<byte> Join(Vector128<byte> lower, Vector128<byte> upper) =>
        Avx2.InsertVector128(lower.ToVector256Unsafe(), upper, 1);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<sbyte> Join(Vector128<sbyte> lower, Vector128<sbyte> upper) =>
        Avx2.InsertVector128(lower.ToVector256Unsafe(), upper, 1);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Join(Vector128<float> lower, Vector128<float> upper) =>
        Avx2.InsertVector128(lower.ToVector256Unsafe(), upper, 1);
}
