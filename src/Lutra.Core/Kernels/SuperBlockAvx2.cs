using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Lutra.Core.Quants;

namespace Lutra.Core.Kernels;

/// <summary>
/// How one Q8_K-paired weight format yields its super-block integer dot at AVX2: Σ scale·code·a over 256
/// elements in eight int32 lanes, eight 32-element chunks each decoded to codes in element order.
/// </summary>
internal unsafe interface ISuperBlockAvx2 : ISuperBlockFormat
{
    static abstract Vector256<int> Dot(byte* w, sbyte* a, short* scales);
}

/// <summary>
/// K-quant, IQ4_XS and ternary weights · Q8_K activations, AVX2 + FMA. The sidecar holds the int8 activations
/// without the 292-byte stride. Per super-block: scalar scale unpack, eight (decode, vpmaddubsw, vpmaddwd by the
/// scales) chunks, one FMA; mins and code offsets are folded out through the activation block sums.
/// </summary>
internal sealed unsafe class SuperBlockMatVecAvx2<TBlock>() : MatVecKernel(TBlock.Type, InstructionSet.Avx2, "AVX2 maddubs, super-block")
    where TBlock : struct, ISuperBlockAvx2
{
    public override int ActivationBytes(int n) => AlignUp(StandardActivationBytes(n)) + AlignUp(n);

    public override void PrepareActivations(float* x, int n, byte* state)
    {
        SuperBlockSidecar.QuantizeStandard(x, n, state, InstructionSet.Avx2);
        var quants = (sbyte*)(state + AlignUp(StandardActivationBytes(n)));
        for (var sb = 0; sb < n / SuperBlockSidecar.Size; sb++)
        {
            for (var i = 0; i < SuperBlockSidecar.Size; i += 32)
                Vector256.Load(SuperBlockSidecar.StandardQuants(state, sb) + i).Store(quants + SuperBlockSidecar.Size * sb + i);
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
            var acc = Vector256<float>.Zero;
            var mins = 0f;
            var exact = 0f;
            for (var sb = 0; sb < superBlocks; sb++, w += TBlock.BlockBytes)
            {
                var da = SuperBlockSidecar.Scale(state, sb);
                var d = TBlock.Scales(w, SuperBlockSidecar.Sums(state, sb), scales, out var offset, out var min);
                var sumi = TBlock.Dot(w, quants + SuperBlockSidecar.Size * sb, scales);

                if (TBlock.HasOffset)

                    exact += d * da * (Vector256.Sum(sumi) - offset);

                else

                    acc = Fma.MultiplyAdd(Vector256.ConvertToSingle(sumi), Vector256.Create(d * da), acc);
                mins += da * min;
            }
            y[r] = Vector256.Sum(acc) + exact - mins;
        }
    }
}

/// <summary>The AVX2 super-block chunk decoders and MADs.</summary>
internal static unsafe class SuperBlockAvx2
{
    private static Vector256<short> Scales(short* s) => Avx2.InsertVector128(Vector128.Create(s[0]).ToVector256Unsafe(), Vector128.Create(s[1]), 1);

    // Unsigned codes ≤ 63 × int8 activations: vpmaddubsw pairs ≤ 2·63·127 = 16002; times a scale |s| ≤ 128 in
    // vpmaddwd, each int32 lane ≤ 2·16002·128 per chunk, and eight chunks stay far inside int32.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> MulAdd(Vector256<byte> codes, sbyte* a, short* scales) =>
        Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(codes, Vector256.Load(a)), Scales(scales));

    // Signed values |w| ≤ 127: |w| × a·sign(w), pairs ≤ 2·127·127 = 32258, no saturation.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> MulAddSigned(Vector256<sbyte> w, sbyte* a, short* scales) =>
        Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(Avx2.Abs(w), Avx2.Sign(Vector256.Load(a), w)), Scales(scales));

    /// <summary>Bits [shift, shift + 2) of each byte.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<byte> Bits2(Vector256<byte> q, int shift) => Vector256.ShiftRightLogical(q.AsUInt16(), shift).AsByte() & Vector256.Create((byte)3);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<byte> Nibble(Vector256<byte> q, int shift) => Vector256.ShiftRightLogical(q.AsUInt16(), shift).AsByte() & Vector256.Create((byte)0x0F);

    /// <summary>Bit <paramref name="bit"/> of each byte, moved to bit <paramref name="to"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<byte> Bit(Vector256<byte> q, int bit, int to)
    {
        var mask = Vector256.Create((byte)(1 << bit));
        return Vector256.Equals(q & mask, mask) & Vector256.Create((byte)(1 << to));
    }

    /// <summary>The trit (3·v) » 8 of each byte v: 1 from v ≥ 86, 2 from v ≥ 171.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<byte> Trits(Vector256<byte> v) =>
        Vector256<byte>.Zero - Vector256.GreaterThanOrEqual(v, Vector256.Create((byte)86)) - Vector256.GreaterThanOrEqual(v, Vector256.Create((byte)171));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<byte> Times3(Vector256<byte> v) => v + v + v;
}

internal readonly unsafe struct Q2_KAvx2 : ISuperBlockAvx2
{
    public static GgmlType Type => GgmlType.Q2_K;
    public static int BlockBytes => Q2_KFormat.BlockBytes;
    public static bool HasOffset => Q2_KFormat.HasOffset;
    public static float Scales(byte* w, short* bsums, short* scales, out int offset, out float min) => Q2_KFormat.Scales(w, bsums, scales, out offset, out min);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> Dot(byte* w, sbyte* a, short* scales)
    {
        var acc = Vector256<int>.Zero;
        for (var h = 0; h < 2; h++)
        {
            var q = Vector256.Load(w + 16 + 32 * h);
            for (var k = 0; k < 4; k++)
                acc += SuperBlockAvx2.MulAdd(SuperBlockAvx2.Bits2(q, 2 * k), a + 128 * h + 32 * k, scales + 8 * h + 2 * k);
        }
        return acc;
    }
}

internal readonly unsafe struct Q3_KAvx2 : ISuperBlockAvx2
{
    public static GgmlType Type => GgmlType.Q3_K;
    public static int BlockBytes => Q3_KFormat.BlockBytes;
    public static bool HasOffset => Q3_KFormat.HasOffset;
    public static float Scales(byte* w, short* bsums, short* scales, out int offset, out float min) => Q3_KFormat.Scales(w, bsums, scales, out offset, out min);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> Dot(byte* w, sbyte* a, short* scales)
    {
        var acc = Vector256<int>.Zero;
        var hmask = Vector256.Load(w);
        for (var h = 0; h < 2; h++)
        {
            var q = Vector256.Load(w + 32 + 32 * h);
            for (var k = 0; k < 4; k++)
            {
                var j = 4 * h + k;
                var codes = SuperBlockAvx2.Bits2(q, 2 * k) | SuperBlockAvx2.Bit(hmask, j, 2);
                acc += SuperBlockAvx2.MulAdd(codes, a + 32 * j, scales + 2 * j);
            }
        }
        return acc;
    }
}

internal readonly unsafe struct Q4_KAvx2 : ISuperBlockAvx2
{
    public static GgmlType Type => GgmlType.Q4_K;
    public static int BlockBytes => Q4_KFormat.BlockBytes;
    public static bool HasOffset => Q4_KFormat.HasOffset;
    public static float Scales(byte* w, short* bsums, short* scales, out int offset, out float min) => Q4_KFormat.Scales(w, bsums, scales, out offset, out min);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> Dot(byte* w, sbyte* a, short* scales)
    {
        var acc = Vector256<int>.Zero;
        for (var c = 0; c < 4; c++)
        {
            var q = Vector256.Load(w + 16 + 32 * c);
            acc += SuperBlockAvx2.MulAdd(SuperBlockAvx2.Nibble(q, 0), a + 64 * c, scales + 4 * c);
            acc += SuperBlockAvx2.MulAdd(SuperBlockAvx2.Nibble(q, 4), a + 64 * c + 32, scales + 4 * c + 2);
        }
        return acc;
    }
}

internal readonly unsafe struct Q5_KAvx2 : ISuperBlockAvx2
{
    public static GgmlType Type => GgmlType.Q5_K;
    public static int BlockBytes => Q5_KFormat.BlockBytes;
    public static bool HasOffset => Q5_KFormat.HasOffset;
    public static float Scales(byte* w, short* bsums, short* scales, out int offset, out float min) => Q5_KFormat.Scales(w, bsums, scales, out offset, out min);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> Dot(byte* w, sbyte* a, short* scales)
    {
        var acc = Vector256<int>.Zero;
        var qh = Vector256.Load(w + 16);
        for (var c = 0; c < 4; c++)
        {
            var q = Vector256.Load(w + 48 + 32 * c);
            acc += SuperBlockAvx2.MulAdd(SuperBlockAvx2.Nibble(q, 0) | SuperBlockAvx2.Bit(qh, 2 * c, 4), a + 64 * c, scales + 4 * c);
            acc += SuperBlockAvx2.MulAdd(SuperBlockAvx2.Nibble(q, 4) | SuperBlockAvx2.Bit(qh, 2 * c + 1, 4), a + 64 * c + 32, scales + 4 * c + 2);
        }
        return acc;
    }
}

internal readonly unsafe struct Q6_KAvx2 : ISuperBlockAvx2
{
    public static GgmlType Type => GgmlType.Q6_K;
    public static int BlockBytes => Q6_KFormat.BlockBytes;
    public static bool HasOffset => Q6_KFormat.HasOffset;
    public static float Scales(byte* w, short* bsums, short* scales, out int offset, out float min) => Q6_KFormat.Scales(w, bsums, scales, out offset, out min);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> Dot(byte* w, sbyte* a, short* scales)
    {
        var acc = Vector256<int>.Zero;
        for (var h = 0; h < 2; h++)
        {
            var qh = Vector256.Load(w + 128 + 32 * h);
            var ql0 = Vector256.Load(w + 64 * h);
            var ql1 = Vector256.Load(w + 64 * h + 32);
            for (var quarter = 0; quarter < 4; quarter++)
            {
                var low = SuperBlockAvx2.Nibble((quarter & 1) == 0 ? ql0 : ql1, 4 * (quarter >> 1));
                var high = Vector256.ShiftLeft(SuperBlockAvx2.Bits2(qh, 2 * quarter).AsUInt16(), 4).AsByte();
                var j = 4 * h + quarter;
                acc += SuperBlockAvx2.MulAdd(low | high, a + 32 * j, scales + 2 * j);
            }
        }
        return acc;
    }
}

internal readonly unsafe struct IQ4_XSAvx2 : ISuperBlockAvx2
{
    public static GgmlType Type => GgmlType.IQ4_XS;
    public static int BlockBytes => IQ4_XSFormat.BlockBytes;
    public static bool HasOffset => IQ4_XSFormat.HasOffset;
    public static float Scales(byte* w, short* bsums, short* scales, out int offset, out float min) => IQ4_XSFormat.Scales(w, bsums, scales, out offset, out min);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> Dot(byte* w, sbyte* a, short* scales)
    {
        var acc = Vector256<int>.Zero;
        var grid = Vector256.Create(Block32Sidecar.NonLinearGrid);
        for (var j = 0; j < 8; j++)
        {
            var values = Avx2.Shuffle(grid, Block32Avx2.Nibbles(w + 8 + 16 * j).AsSByte());
            acc += SuperBlockAvx2.MulAddSigned(values, a + 32 * j, scales + 2 * j);
        }
        return acc;
    }
}

internal readonly unsafe struct TQ2_0Avx2 : ISuperBlockAvx2
{
    public static GgmlType Type => GgmlType.TQ2_0;
    public static int BlockBytes => TQ2_0Format.BlockBytes;
    public static bool HasOffset => TQ2_0Format.HasOffset;
    public static float Scales(byte* w, short* bsums, short* scales, out int offset, out float min) => TQ2_0Format.Scales(w, bsums, scales, out offset, out min);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> Dot(byte* w, sbyte* a, short* scales)
    {
        var acc = Vector256<int>.Zero;
        for (var h = 0; h < 2; h++)
        {
            var q = Vector256.Load(w + 32 * h);
            for (var k = 0; k < 4; k++)
                acc += SuperBlockAvx2.MulAdd(SuperBlockAvx2.Bits2(q, 2 * k), a + 128 * h + 32 * k, scales + 8 * h + 2 * k);
        }
        return acc;
    }
}

internal readonly unsafe struct TQ1_0Avx2 : ISuperBlockAvx2
{
    public static GgmlType Type => GgmlType.TQ1_0;
    public static int BlockBytes => TQ1_0Format.BlockBytes;
    public static bool HasOffset => TQ1_0Format.HasOffset;
    public static float Scales(byte* w, short* bsums, short* scales, out int offset, out float min) => TQ1_0Format.Scales(w, bsums, scales, out offset, out min);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> Dot(byte* w, sbyte* a, short* scales)
    {
        // Trit k of a byte q is the top of (q·3^k mod 256)·3: qs[0..32) give elements 32k + m, qs[32..48)
        // elements 160 + 16k + m, and trit k of qh[j] is element 240 + 4k + j.
        var acc = Vector256<int>.Zero;
        var v = Vector256.Load(w);
        for (var k = 0; k < 5; k++, v = SuperBlockAvx2.Times3(v))
            acc += SuperBlockAvx2.MulAdd(SuperBlockAvx2.Trits(v), a + 32 * k, scales + 2 * k);
        var tail = TQ1_0Vector128.TailPowers(w);
        acc += SuperBlockAvx2.MulAdd(SuperBlockAvx2.Trits(Vector256.Create(tail.P0, tail.P1)), a + 160, scales + 10);
        acc += SuperBlockAvx2.MulAdd(SuperBlockAvx2.Trits(Vector256.Create(tail.P2, tail.P3)), a + 192, scales + 12);
        acc += SuperBlockAvx2.MulAdd(SuperBlockAvx2.Trits(Vector256.Create(tail.P4, tail.High)), a + 224, scales + 14);
        return acc;
    }
}
