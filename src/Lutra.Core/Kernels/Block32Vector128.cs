using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Lutra.Core.Quants;

namespace Lutra.Core.Kernels;

/// <summary>
/// How one 32-element weight format yields its integer block dot with portable Vector128: <see cref="Dot"/>
/// returns Σ code·a in four int32 lanes (layout of <see cref="Block32Vector128.MulAdd"/>) against int16 activations.
/// </summary>
internal unsafe interface IBlock32Vector128 : IBlock32Format
{
    static abstract Vector128<int> Dot(byte* block, short* a);
}

/// <summary>
/// 32-element block weights · Q8_0/Q8_1 activations with portable Vector128 (SSE/NEON), four rows per pass.
/// Without a portable unsigned × signed byte MAD, the sidecar stores the activations widened to int16 once per
/// input, so each weight block costs its decode, four widenings and four int16 pair MADs per row.
/// </summary>
internal sealed unsafe class Block32MatVecVector128<TBlock>() : MatVecKernel(TBlock.Type, InstructionSet.Vector128, "Vector128 int16 MAD, 4 rows")
    where TBlock : struct, IBlock32Vector128
{
    private const int Block = 32;

    public override int ActivationBytes(int n) => AlignUp(StandardActivationBytes(n)) + Block32Sidecar.Bytes(n, 64, 16);

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public override void PrepareActivations(float* x, int n, byte* state)
    {
        Block32Sidecar.QuantizeStandard(ActivationType, x, n, state, InstructionSet.Vector128);
        var sidecar = Block32Sidecar.At(state, StandardActivationBytes(n), n, 64, 16);
        var blocks = n / Block;
        var wide = (short*)sidecar.Quants;
        var offset = Vector128.Create((short)TBlock.Offset);
        for (var b = 0; b < blocks; b++)
        {
            var q = Block32Sidecar.StandardQuants(ActivationType, state, b);
            var a = wide + Block * b;
            for (var i = 0; i < Block; i += 16)
            {
                var bytes = Vector128.Load(q + i);
                Vector128.WidenLower(bytes).Store(a + i);
                Vector128.WidenUpper(bytes).Store(a + i + 8);
            }
            // The offset lanes come from the same MAD as the weights, so they match its lane layout.
            if (TBlock.Offset != 0)
            {
                (Block32Vector128.MulAdd(offset, Vector128.Load(a)) + Block32Vector128.MulAdd(offset, Vector128.Load(a + 8))
                    + Block32Vector128.MulAdd(offset, Vector128.Load(a + 16)) + Block32Vector128.MulAdd(offset, Vector128.Load(a + 24)))
                    .Store(sidecar.Offsets + 4 * b);
            }
        }
        Block32Sidecar.StoreScales(ActivationType, state, blocks, sidecar);
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public override void MatVec(byte* weights, long rowBytes, int rows, byte* state, int n, float* y)
    {
        var s = Block32Sidecar.At(state, StandardActivationBytes(n), n, 64, 16);
        var wide = (short*)s.Quants;
        var blocks = n / Block;
        var r = 0;
        // One row at a time: the weights stream sequentially (interleaved rows halved the read bandwidth).
        for (; r < rows; r++)
        {
            var w = weights + r * rowBytes;
            Vector128<float> acc = default;
            var min = 0f;
            for (var b = 0; b < blocks; b++, w += TBlock.BlockBytes)
            {
                var off = TBlock.Offset != 0 ? Vector128.Load(s.Offsets + 4 * b) : default;
                acc = Step(w, wide + Block * b, off, s.Scales[b], acc);
                if (TBlock.HasMin)
                    min += HalfLookup.ToSingle(w + 2) * s.Sums[b];
            }
            y[r] = Vector128.Sum(acc) + min;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<float> Step(byte* block, short* a, Vector128<int> offset, float activationScale, Vector128<float> acc)
    {
        var sumi = TBlock.Dot(block, a);
        if (TBlock.Offset != 0)
            sumi -= offset;
        return Vector128.MultiplyAddEstimate(Vector128.ConvertToSingle(sumi), Vector128.Create(HalfLookup.ToSingle(block) * activationScale), acc);
    }
}

/// <summary>The Vector128 block decoders: codes (or signed values) as bytes, widened to int16 for the MAD.</summary>
internal static unsafe class Block32Vector128
{
    /// <summary>
    /// Σ x·y of eight int16 pairs into four int32 lanes. x86 has it as one instruction (pmaddwd); elsewhere the
    /// products are widened first. The lane assignment differs between the two, so lane-wise offsets must be
    /// computed with this same method.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<int> MulAdd(Vector128<short> x, Vector128<short> y)
    {
        if (Sse2.IsSupported)
            return Sse2.MultiplyAddAdjacent(x, y);
        return Vector128.WidenLower(x) * Vector128.WidenLower(y) + Vector128.WidenUpper(x) * Vector128.WidenUpper(y);
    }

    /// <summary>Σ w·a over 32 elements: <paramref name="low"/> holds elements 0..15, <paramref name="high"/> 16..31.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<int> MulAdd32(Vector128<sbyte> low, Vector128<sbyte> high, short* a) =>
        MulAdd(Vector128.WidenLower(low), Vector128.Load(a)) + MulAdd(Vector128.WidenUpper(low), Vector128.Load(a + 8))
        + MulAdd(Vector128.WidenLower(high), Vector128.Load(a + 16)) + MulAdd(Vector128.WidenUpper(high), Vector128.Load(a + 24));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<byte> LowNibbles(Vector128<byte> bytes) => bytes & Vector128.Create((byte)0x0F);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<byte> HighNibbles(Vector128<byte> bytes) => Vector128.ShiftRightLogical(bytes.AsUInt16(), 4).AsByte() & Vector128.Create((byte)0x0F);

    /// <summary>Bits 0..15 of <paramref name="bits"/> as 0x10 in bytes 0..15 (Q5's fifth bit).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<byte> FifthBits(uint bits)
    {
        var spread = Vector128.Create((ushort)bits).AsByte();
        spread = Vector128.Shuffle(spread, Vector128.Create((byte)0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1));
        var bit = Vector128.Create(0x8040201008040201ul).AsByte();
        return Vector128.Equals(spread & bit, bit) & Vector128.Create((byte)0x10);
    }

    /// <summary>Table lookup of 16 indices (0..15): pshufb where there is one.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<sbyte> Lookup(Vector128<sbyte> table, Vector128<byte> indices) =>
        Ssse3.IsSupported ? Ssse3.Shuffle(table, indices.AsSByte()) : Vector128.Shuffle(table, indices.AsSByte());
}

internal readonly unsafe struct Q4_0Vector128 : IBlock32Vector128
{
    public static GgmlType Type => GgmlType.Q4_0;
    public static int BlockBytes => 18;
    public static int Offset => 8;
    public static bool HasMin => false;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<int> Dot(byte* block, short* a)
    {
        var bytes = Vector128.Load(block + 2);
        return Block32Vector128.MulAdd32(Block32Vector128.LowNibbles(bytes).AsSByte(), Block32Vector128.HighNibbles(bytes).AsSByte(), a);
    }
}

internal readonly unsafe struct Q4_1Vector128 : IBlock32Vector128
{
    public static GgmlType Type => GgmlType.Q4_1;
    public static int BlockBytes => 20;
    public static int Offset => 0;
    public static bool HasMin => true;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<int> Dot(byte* block, short* a)
    {
        var bytes = Vector128.Load(block + 4);
        return Block32Vector128.MulAdd32(Block32Vector128.LowNibbles(bytes).AsSByte(), Block32Vector128.HighNibbles(bytes).AsSByte(), a);
    }
}

internal readonly unsafe struct Q5_0Vector128 : IBlock32Vector128
{
    public static GgmlType Type => GgmlType.Q5_0;
    public static int BlockBytes => 22;
    public static int Offset => 16;
    public static bool HasMin => false;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<int> Dot(byte* block, short* a)
    {
        var bytes = Vector128.Load(block + 6);
        var qh = *(uint*)(block + 2);
        var low = Block32Vector128.LowNibbles(bytes) | Block32Vector128.FifthBits(qh);
        var high = Block32Vector128.HighNibbles(bytes) | Block32Vector128.FifthBits(qh >> 16);
        return Block32Vector128.MulAdd32(low.AsSByte(), high.AsSByte(), a);
    }
}

internal readonly unsafe struct Q5_1Vector128 : IBlock32Vector128
{
    public static GgmlType Type => GgmlType.Q5_1;
    public static int BlockBytes => 24;
    public static int Offset => 0;
    public static bool HasMin => true;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<int> Dot(byte* block, short* a)
    {
        var bytes = Vector128.Load(block + 8);
        var qh = *(uint*)(block + 4);
        var low = Block32Vector128.LowNibbles(bytes) | Block32Vector128.FifthBits(qh);
        var high = Block32Vector128.HighNibbles(bytes) | Block32Vector128.FifthBits(qh >> 16);
        return Block32Vector128.MulAdd32(low.AsSByte(), high.AsSByte(), a);
    }
}

internal readonly unsafe struct Q8_0Vector128 : IBlock32Vector128
{
    public static GgmlType Type => GgmlType.Q8_0;
    public static int BlockBytes => 34;
    public static int Offset => 0;
    public static bool HasMin => false;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<int> Dot(byte* block, short* a) =>
        Block32Vector128.MulAdd32(Vector128.Load((sbyte*)(block + 2)), Vector128.Load((sbyte*)(block + 18)), a);
}

internal readonly unsafe struct IQ4_NLVector128 : IBlock32Vector128
{
    public static GgmlType Type => GgmlType.IQ4_NL;
    public static int BlockBytes => 18;
    public static int Offset => 0;
    public static bool HasMin => false;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<int> Dot(byte* block, short* a)
    {
        var bytes = Vector128.Load(block + 2);
        var grid = Block32Sidecar.NonLinearGrid;
        return Block32Vector128.MulAdd32(Block32Vector128.Lookup(grid, Block32Vector128.LowNibbles(bytes)),
            Block32Vector128.Lookup(grid, Block32Vector128.HighNibbles(bytes)), a);
    }
}
