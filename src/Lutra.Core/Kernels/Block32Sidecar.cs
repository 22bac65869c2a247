using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using Lutra.Core.Quants;

namespace Lutra.Core.Kernels;

/// <summary>
/// The format facts a 32-element block kernel needs, the same at every instruction set. Every such block starts
/// with its f16 scale d; a format with a min stores it as f16 right after d. Value = d·(code − <see cref="Offset"/>),
/// or d·code + m when <see cref="HasMin"/>.
/// </summary>
internal interface IBlock32Format
{
    static abstract GgmlType Type { get; }
    static abstract int BlockBytes { get; }
    static abstract int Offset { get; }
    static abstract bool HasMin { get; }
}

/// <summary>
/// The sidecar the 32-element block kernels append to Q8_0/Q8_1 activations: the int8 (or widened) quants without
/// the block stride, per-block offset lane sums in whatever lane layout the ISA's MAD produces, and the activation
/// block scale d and (Q8_1) s = d·Σq as f32.
/// </summary>
internal readonly unsafe struct Block32Sidecar
{
    public readonly sbyte* Quants;
    public readonly int* Offsets;
    public readonly float* Scales;
    public readonly float* Sums;

    private Block32Sidecar(sbyte* quants, int* offsets, float* scales, float* sums)
    {
        Quants = quants;
        Offsets = offsets;
        Scales = scales;
        Sums = sums;
    }

    // Block counts are rounded up to even so the AVX-512 pair layout fits too.
    private static int EvenBlocks(int n) => (n / 32 + 1) & ~1;

    private static int Align(int bytes) => (bytes + 63) & ~63;

    public static int Bytes(int n, int quantBytesPerBlock, int offsetBytesPerBlock) =>
        Align(EvenBlocks(n) * quantBytesPerBlock) + Align(EvenBlocks(n) * offsetBytesPerBlock) + 2 * Align(EvenBlocks(n) * 4);

    public static Block32Sidecar At(byte* state, int standardBytes, int n, int quantBytesPerBlock, int offsetBytesPerBlock)
    {
        var quants = state + Align(standardBytes);
        var offsets = quants + Align(EvenBlocks(n) * quantBytesPerBlock);
        var scales = offsets + Align(EvenBlocks(n) * offsetBytesPerBlock);
        var sums = scales + Align(EvenBlocks(n) * 4);
        return new((sbyte*)quants, (int*)offsets, (float*)scales, (float*)sums);
    }

    /// <summary>The standard Q8_0 / Q8_1 activation row, bit-identical to the reference conversion.</summary>
    public static void QuantizeStandard(GgmlType activationType, float* x, int n, byte* state, InstructionSet isa)
    {
        if (activationType == GgmlType.Q8_1)
            Q8_1Kernels.QuantizeRowVector128(x, state, n);
        else if (isa >= InstructionSet.Avx512)
            Q8_0Kernels.QuantizeRowAvx512(x, state, n);
        else
            Q8_0Kernels.QuantizeRowVector128(x, state, n);
    }

    /// <summary>The 32 int8 quants of activation block <paramref name="b"/> in the standard row.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static sbyte* StandardQuants(GgmlType activationType, byte* state, int b) =>
        activationType == GgmlType.Q8_1 ? (sbyte*)(state + 36 * b + 4) : (sbyte*)(state + 34 * b + 2);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void StoreScales(GgmlType activationType, byte* state, int blocks, Block32Sidecar sidecar)
    {
        var stride = activationType == GgmlType.Q8_1 ? 36 : 34;
        for (var b = 0; b < blocks; b++)
        {
            sidecar.Scales[b] = HalfLookup.ToSingle(state + stride * b);
            if (activationType == GgmlType.Q8_1)
                sidecar.Sums[b] = HalfLookup.ToSingle(state + stride * b + 2);
        }
    }

    /// <summary>IQ4_NL/IQ4_XS's 16 grid values (kvalues_iq4nl) as a byte-shuffle table.</summary>
    public static Vector128<sbyte> NonLinearGrid => Vector128.Create((sbyte)-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113);
}
