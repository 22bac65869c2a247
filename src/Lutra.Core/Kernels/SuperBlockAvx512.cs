using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Lutra.Core.Quants;

namespace Lutra.Core.Kernels;

/// <summary>
/// How one Q8_K-paired weight format yields its super-block integer dot at AVX-512: Σ scale·code·a over 256
/// elements in sixteen int32 lanes, four 64-element steps each decoded to codes in element order.
/// </summary>
internal unsafe interface ISuperBlockAvx512 : ISuperBlockFormat
{
    static abstract Vector512<int> Dot(byte* w, sbyte* a, short* scales);
}

/// <summary>
/// Q8_K-paired weights · Q8_K activations, AVX-512 BW: the structure of <see cref="SuperBlockMatVecAvx2{TBlock}"/>
/// with 64 elements per step. The sidecar holds the int8 activations without the 292-byte stride.
/// </summary>
internal sealed unsafe class SuperBlockMatVecAvx512<TBlock>() : MatVecKernel(TBlock.Type, InstructionSet.Avx512, "AVX-512 maddubs, super-block")
    where TBlock : struct, ISuperBlockAvx512
{
    public override int ActivationBytes(int n) => AlignUp(StandardActivationBytes(n)) + AlignUp(n);

    public override void PrepareActivations(float* x, int n, byte* state)
    {
        SuperBlockSidecar.QuantizeStandard(x, n, state, InstructionSet.Avx512);
        var quants = (sbyte*)(state + AlignUp(StandardActivationBytes(n)));
        for (var sb = 0; sb < n / SuperBlockSidecar.Size; sb++)
        {
            for (var i = 0; i < SuperBlockSidecar.Size; i += 64)
                Vector512.Load(SuperBlockSidecar.StandardQuants(state, sb) + i).Store(quants + SuperBlockSidecar.Size * sb + i);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void MatVec(byte* weights, long rowBytes, int rows, byte* state, int n, float* y)
    {
        var quants = (sbyte*)(state + AlignUp(StandardActivationBytes(n)));
        var superBlocks = n / SuperBlockSidecar.Size;
        var scales = stackalloc short[16];
        for (var r = 0; r < rows; r++)
        {
            var w = weights + r * rowBytes;
            var acc = Vector512<float>.Zero;
            var mins = 0f;
            var exact = 0f;
            for (var sb = 0; sb < superBlocks; sb++, w += TBlock.BlockBytes)
            {
                var da = SuperBlockSidecar.Scale(state, sb);
                var d = TBlock.Scales(w, SuperBlockSidecar.Sums(state, sb), scales, out var offset, out var min);
                var sumi = TBlock.Dot(w, quants + SuperBlockSidecar.Size * sb, scales);

                if (TBlock.HasOffset)

                    exact += d * da * (Vector512.Sum(sumi) - offset);

                else

                    acc = Avx512F.FusedMultiplyAdd(Vector512.ConvertToSingle(sumi), Vector512.Create(d * da), acc);
                mins += da * min;
            }
            y[r] = Vector512.Sum(acc) + exact - mins;
        }
    }
}

/// <summary>The AVX-512 super-block decoders and MADs.</summary>
internal static unsafe class SuperBlockAvx512
{
    // 128-bit lane L covers elements 16L..16L+15, so it takes the scale of sub-block L.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<short> Scales(short* s) =>
        Avx512BW.PermuteVar32x16(Vector128.CreateScalarUnsafe(*(long*)s).AsInt16().ToVector256Unsafe().ToVector512Unsafe(), SubBlockLanes);

    // int16 lane i of a 64-element step belongs to 16-element sub-block i / 8.
    private static readonly Vector512<short> SubBlockLanes = Vector512.Create(
        (short)0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);

    // Unsigned codes ≤ 63: vpmaddubsw pairs ≤ 2·63·127 = 16002, times |scale| ≤ 128 in vpmaddwd fits int32.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<int> MulAdd(Vector512<byte> codes, sbyte* a, short* scales) =>
        Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(codes, Vector512.Load(a)), Scales(scales));

    // Signed values |w| ≤ 127: |w| × a·sign(w) with the sign applied by compare and blend (no vpsignb at
    // AVX-512); pairs ≤ 2·127·127 = 32258, no saturation.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<int> MulAddSigned(Vector512<sbyte> w, sbyte* a, short* scales)
    {
        var activations = Vector512.Load(a);
        var signed = Vector512.ConditionalSelect(Vector512.LessThan(w, Vector512<sbyte>.Zero), Vector512<sbyte>.Zero - activations, activations);
        return Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(Avx512BW.Abs(w), signed), Scales(scales));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<byte> Bits2(Vector512<byte> q, int shift) => Vector512.ShiftRightLogical(q.AsUInt16(), shift).AsByte() & Vector512.Create((byte)3);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<byte> Bits(Vector512<byte> q, Vector512<byte> bit, byte to) => Vector512.Equals(q & bit, bit) & Vector512.Create(to);
}

internal readonly unsafe struct Q3_KAvx512 : ISuperBlockAvx512
{
    public static GgmlType Type => GgmlType.Q3_K;
    public static int BlockBytes => Q3_KFormat.BlockBytes;
    public static bool HasOffset => Q3_KFormat.HasOffset;
    public static float Scales(byte* w, short* bsums, short* scales, out int offset, out float min) => Q3_KFormat.Scales(w, bsums, scales, out offset, out min);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<int> Dot(byte* w, sbyte* a, short* scales)
    {
        var acc = Vector512<int>.Zero;
        var hmask = Vector256.Load(w);
        var hmask2 = VectorJoin.Join(hmask, hmask);
        for (var h = 0; h < 2; h++)
        {
            var q = Vector256.Load(w + 32 + 32 * h);
            for (var k = 0; k < 4; k += 2)
            {
                var j = 4 * h + k;
                // Chunk j in the lower half, chunk j + 1 in the upper: shifts 2k / 2k + 2, high-mask bits j / j + 1.
                var low = VectorJoin.Join(Vector256.ShiftRightLogical(q.AsUInt16(), 2 * k).AsByte(), Vector256.ShiftRightLogical(q.AsUInt16(), 2 * k + 2).AsByte())
                    & Vector512.Create((byte)3);
                var bit = VectorJoin.Join(Vector256.Create((byte)(1 << j)), Vector256.Create((byte)(2 << j)));
                acc += SuperBlockAvx512.MulAdd(low | SuperBlockAvx512.Bits(hmask2, bit, 4), a + 32 * j, scales + 2 * j);
            }
        }
        return acc;
    }
}

internal readonly unsafe struct Q5_KAvx512 : ISuperBlockAvx512
{
    public static GgmlType Type => GgmlType.Q5_K;
    public static int BlockBytes => Q5_KFormat.BlockBytes;
    public static bool HasOffset => Q5_KFormat.HasOffset;
    public static float Scales(byte* w, short* bsums, short* scales, out int offset, out float min) => Q5_KFormat.Scales(w, bsums, scales, out offset, out min);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<int> Dot(byte* w, sbyte* a, short* scales)
    {
        var acc = Vector512<int>.Zero;
        var qh = Vector256.Load(w + 16);
        var qh2 = VectorJoin.Join(qh, qh);
        var low = Vector256.Create((byte)0x0F);
        for (var c = 0; c < 4; c++)
        {
            var q = Vector256.Load(w + 48 + 32 * c);
            var nibbles = VectorJoin.Join(q & low, Vector256.ShiftRightLogical(q.AsUInt16(), 4).AsByte() & low);
            var bit = VectorJoin.Join(Vector256.Create((byte)(1 << (2 * c))), Vector256.Create((byte)(2 << (2 * c))));
            acc += SuperBlockAvx512.MulAdd(nibbles | SuperBlockAvx512.Bits(qh2, bit, 16), a + 64 * c, scales + 4 * c);
        }
        return acc;
    }
}

internal readonly unsafe struct IQ4_XSAvx512 : ISuperBlockAvx512
{
    public static GgmlType Type => GgmlType.IQ4_XS;
    public static int BlockBytes => IQ4_XSFormat.BlockBytes;
    public static bool HasOffset => IQ4_XSFormat.HasOffset;
    public static float Scales(byte* w, short* bsums, short* scales, out int offset, out float min) => IQ4_XSFormat.Scales(w, bsums, scales, out offset, out min);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<int> Dot(byte* w, sbyte* a, short* scales)
    {
        var acc = Vector512<int>.Zero;
        var grid = Vector512.Create(Block32Sidecar.NonLinearGrid);
        for (var j = 0; j < 8; j += 2)
        {
            var codes = VectorJoin.Join(Block32Avx2.Nibbles(w + 8 + 16 * j), Block32Avx2.Nibbles(w + 8 + 16 * j + 16));
            acc += SuperBlockAvx512.MulAddSigned(Avx512BW.Shuffle(grid, codes.AsSByte()), a + 32 * j, scales + 2 * j);
        }
        return acc;
    }
}
