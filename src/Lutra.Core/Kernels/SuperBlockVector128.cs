using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using Lutra.Core.Quants;

namespace Lutra.Core.Kernels;

/// <summary>
/// How one Q8_K-paired weight format yields its super-block integer dot with portable Vector128: Σ scale·code·a
/// over 256 elements in four int32 lanes, against int16 activations.
/// </summary>
internal unsafe interface ISuperBlockVector128 : ISuperBlockFormat
{
    static abstract Vector128<int> Dot(byte* w, short* a, short* scales);
}

/// <summary>
/// K-quant, IQ4_XS and ternary weights · Q8_K activations with portable Vector128 (SSE/NEON). The sidecar holds the
/// activations widened to int16 once per input; each 16-element sub-block is widened, scaled in int16 and reduced
/// with int16 pair MADs. Mins and code offsets are folded out through the activation block sums.
/// </summary>
internal sealed unsafe class SuperBlockMatVecVector128<TBlock>() : MatVecKernel(TBlock.Type, InstructionSet.Vector128, "Vector128 int16 MAD, super-block")
    where TBlock : struct, ISuperBlockVector128
{
    public override int ActivationBytes(int n) => AlignUp(StandardActivationBytes(n)) + AlignUp(2 * n);

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public override void PrepareActivations(float* x, int n, byte* state)
    {
        SuperBlockSidecar.QuantizeStandard(x, n, state, InstructionSet.Vector128);
        var wide = (short*)(state + AlignUp(StandardActivationBytes(n)));
        for (var sb = 0; sb < n / SuperBlockSidecar.Size; sb++)
        {
            for (var i = 0; i < SuperBlockSidecar.Size; i += 16)
            {
                var bytes = Vector128.Load(SuperBlockSidecar.StandardQuants(state, sb) + i);
                Vector128.WidenLower(bytes).Store(wide + SuperBlockSidecar.Size * sb + i);
                Vector128.WidenUpper(bytes).Store(wide + SuperBlockSidecar.Size * sb + i + 8);
            }
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public override void MatVec(byte* weights, long rowBytes, int rows, byte* state, int n, float* y)
    {
        var wide = (short*)(state + AlignUp(StandardActivationBytes(n)));
        var superBlocks = n / SuperBlockSidecar.Size;
        var scales = stackalloc short[16];
        for (var r = 0; r < rows; r++)
        {
            var w = weights + r * rowBytes;
            var acc = Vector128<float>.Zero;
            var mins = 0f;
            var exact = 0f;
            for (var sb = 0; sb < superBlocks; sb++, w += TBlock.BlockBytes)
            {
                var da = SuperBlockSidecar.Scale(state, sb);
                var d = TBlock.Scales(w, SuperBlockSidecar.Sums(state, sb), scales, out var offset, out var min);
                var sumi = TBlock.Dot(w, wide + SuperBlockSidecar.Size * sb, scales);

                if (TBlock.HasOffset)

                    exact += d * da * (Vector128.Sum(sumi) - offset);

                else

                    acc = Vector128.MultiplyAddEstimate(Vector128.ConvertToSingle(sumi), Vector128.Create(d * da), acc);
                mins += da * min;
            }
            y[r] = Vector128.Sum(acc) + exact - mins;
        }
    }
}

/// <summary>The Vector128 super-block chunk decoders and MADs.</summary>
internal static unsafe class SuperBlockVector128
{
    // 16 codes (|code| ≤ 127) times their sub-block scale in int16: |code·scale| ≤ 63·128 or 127·32 fits; the
    // pair MADs with |a| ≤ 127 accumulate in int32.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<int> MulAdd16(Vector128<sbyte> codes, short* a, short scale)
    {
        var s = Vector128.Create(scale);
        return Block32Vector128.MulAdd(Vector128.WidenLower(codes) * s, Vector128.Load(a))
            + Block32Vector128.MulAdd(Vector128.WidenUpper(codes) * s, Vector128.Load(a + 8));
    }

    /// <summary>32 codes of one chunk: <paramref name="low"/> are elements 0..15, <paramref name="high"/> 16..31.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<int> MulAdd32(Vector128<byte> low, Vector128<byte> high, short* a, short* scales) =>
        MulAdd16(low.AsSByte(), a, scales[0]) + MulAdd16(high.AsSByte(), a + 16, scales[1]);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<byte> Bits2(Vector128<byte> q, int shift) => Vector128.ShiftRightLogical(q.AsUInt16(), shift).AsByte() & Vector128.Create((byte)3);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<byte> Nibble(Vector128<byte> q, int shift) => Vector128.ShiftRightLogical(q.AsUInt16(), shift).AsByte() & Vector128.Create((byte)0x0F);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<byte> Bit(Vector128<byte> q, int bit, int to)
    {
        var mask = Vector128.Create((byte)(1 << bit));
        return Vector128.Equals(q & mask, mask) & Vector128.Create((byte)(1 << to));
    }

    /// <summary>The trit (3·v) » 8 of each byte v: 1 from v ≥ 86, 2 from v ≥ 171.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<byte> Trits(Vector128<byte> v) =>
        Vector128<byte>.Zero - Vector128.GreaterThanOrEqual(v, Vector128.Create((byte)86)) - Vector128.GreaterThanOrEqual(v, Vector128.Create((byte)171));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<byte> Times3(Vector128<byte> v) => v + v + v;
}

internal readonly unsafe struct Q2_KVector128 : ISuperBlockVector128
{
    public static GgmlType Type => GgmlType.Q2_K;
    public static int BlockBytes => Q2_KFormat.BlockBytes;
    public static bool HasOffset => Q2_KFormat.HasOffset;
    public static float Scales(byte* w, short* bsums, short* scales, out int offset, out float min) => Q2_KFormat.Scales(w, bsums, scales, out offset, out min);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<int> Dot(byte* w, short* a, short* scales)
    {
        var acc = Vector128<int>.Zero;
        for (var h = 0; h < 2; h++)
        {
            var q0 = Vector128.Load(w + 16 + 32 * h);
            var q1 = Vector128.Load(w + 16 + 32 * h + 16);
            for (var k = 0; k < 4; k++)
                acc += SuperBlockVector128.MulAdd32(SuperBlockVector128.Bits2(q0, 2 * k), SuperBlockVector128.Bits2(q1, 2 * k), a + 128 * h + 32 * k, scales + 8 * h + 2 * k);
        }
        return acc;
    }
}

internal readonly unsafe struct Q3_KVector128 : ISuperBlockVector128
{
    public static GgmlType Type => GgmlType.Q3_K;
    public static int BlockBytes => Q3_KFormat.BlockBytes;
    public static bool HasOffset => Q3_KFormat.HasOffset;
    public static float Scales(byte* w, short* bsums, short* scales, out int offset, out float min) => Q3_KFormat.Scales(w, bsums, scales, out offset, out min);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<int> Dot(byte* w, short* a, short* scales)
    {
        var acc = Vector128<int>.Zero;
        var hmask0 = Vector128.Load(w);
        var hmask1 = Vector128.Load(w + 16);
        for (var h = 0; h < 2; h++)
        {
            var q0 = Vector128.Load(w + 32 + 32 * h);
            var q1 = Vector128.Load(w + 32 + 32 * h + 16);
            for (var k = 0; k < 4; k++)
            {
                var j = 4 * h + k;
                var low = SuperBlockVector128.Bits2(q0, 2 * k) | SuperBlockVector128.Bit(hmask0, j, 2);
                var high = SuperBlockVector128.Bits2(q1, 2 * k) | SuperBlockVector128.Bit(hmask1, j, 2);
                acc += SuperBlockVector128.MulAdd32(low, high, a + 32 * j, scales + 2 * j);
            }
        }
        return acc;
    }
}

internal readonly unsafe struct Q4_KVector128 : ISuperBlockVector128
{
    public static GgmlType Type => GgmlType.Q4_K;
    public static int BlockBytes => Q4_KFormat.BlockBytes;
    public static bool HasOffset => Q4_KFormat.HasOffset;
    public static float Scales(byte* w, short* bsums, short* scales, out int offset, out float min) => Q4_KFormat.Scales(w, bsums, scales, out offset, out min);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<int> Dot(byte* w, short* a, short* scales)
    {
        var acc = Vector128<int>.Zero;
        for (var c = 0; c < 4; c++)
        {
            var q0 = Vector128.Load(w + 16 + 32 * c);
            var q1 = Vector128.Load(w + 16 + 32 * c + 16);
            acc += SuperBlockVector128.MulAdd32(SuperBlockVector128.Nibble(q0, 0), SuperBlockVector128.Nibble(q1, 0), a + 64 * c, scales + 4 * c);
            acc += SuperBlockVector128.MulAdd32(SuperBlockVector128.Nibble(q0, 4), SuperBlockVector128.Nibble(q1, 4), a + 64 * c + 32, scales + 4 * c + 2);
        }
        return acc;
    }
}

internal readonly unsafe struct Q5_KVector128 : ISuperBlockVector128
{
    public static GgmlType Type => GgmlType.Q5_K;
    public static int BlockBytes => Q5_KFormat.BlockBytes;
    public static bool HasOffset => Q5_KFormat.HasOffset;
    public static float Scales(byte* w, short* bsums, short* scales, out int offset, out float min) => Q5_KFormat.Scales(w, bsums, scales, out offset, out min);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<int> Dot(byte* w, short* a, short* scales)
    {
        var acc = Vector128<int>.Zero;
        var qh0 = Vector128.Load(w + 16);
        var qh1 = Vector128.Load(w + 32);
        for (var c = 0; c < 4; c++)
        {
            var q0 = Vector128.Load(w + 48 + 32 * c);
            var q1 = Vector128.Load(w + 48 + 32 * c + 16);
            acc += SuperBlockVector128.MulAdd32(SuperBlockVector128.Nibble(q0, 0) | SuperBlockVector128.Bit(qh0, 2 * c, 4),
                SuperBlockVector128.Nibble(q1, 0) | SuperBlockVector128.Bit(qh1, 2 * c, 4), a + 64 * c, scales + 4 * c);
            acc += SuperBlockVector128.MulAdd32(SuperBlockVector128.Nibble(q0, 4) | SuperBlockVector128.Bit(qh0, 2 * c + 1, 4),
                SuperBlockVector128.Nibble(q1, 4) | SuperBlockVector128.Bit(qh1, 2 * c + 1, 4), a + 64 * c + 32, scales + 4 * c + 2);
        }
        return acc;
    }
}

internal readonly unsafe struct Q6_KVector128 : ISuperBlockVector128
{
    public static GgmlType Type => GgmlType.Q6_K;
    public static int BlockBytes => Q6_KFormat.BlockBytes;
    public static bool HasOffset => Q6_KFormat.HasOffset;
    public static float Scales(byte* w, short* bsums, short* scales, out int offset, out float min) => Q6_KFormat.Scales(w, bsums, scales, out offset, out min);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<int> Dot(byte* w, short* a, short* scales)
    {
        var acc = Vector128<int>.Zero;
        for (var h = 0; h < 2; h++)
        {
            var qh0 = Vector128.Load(w + 128 + 32 * h);
            var qh1 = Vector128.Load(w + 128 + 32 * h + 16);
            for (var quarter = 0; quarter < 4; quarter++)
            {
                var ql = w + 64 * h + 32 * (quarter & 1);
                var shift = 4 * (quarter >> 1);
                var low = SuperBlockVector128.Nibble(Vector128.Load(ql), shift) | Vector128.ShiftLeft(SuperBlockVector128.Bits2(qh0, 2 * quarter).AsUInt16(), 4).AsByte();
                var high = SuperBlockVector128.Nibble(Vector128.Load(ql + 16), shift) | Vector128.ShiftLeft(SuperBlockVector128.Bits2(qh1, 2 * quarter).AsUInt16(), 4).AsByte();
                var j = 4 * h + quarter;
                acc += SuperBlockVector128.MulAdd32(low, high, a + 32 * j, scales + 2 * j);
            }
        }
        return acc;
    }
}

internal readonly unsafe struct IQ4_XSVector128 : ISuperBlockVector128
{
    public static GgmlType Type => GgmlType.IQ4_XS;
    public static int BlockBytes => IQ4_XSFormat.BlockBytes;
    public static bool HasOffset => IQ4_XSFormat.HasOffset;
    public static float Scales(byte* w, short* bsums, short* scales, out int offset, out float min) => IQ4_XSFormat.Scales(w, bsums, scales, out offset, out min);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<int> Dot(byte* w, short* a, short* scales)
    {
        var acc = Vector128<int>.Zero;
        var grid = Block32Sidecar.NonLinearGrid;
        for (var j = 0; j < 8; j++)
        {
            var bytes = Vector128.Load(w + 8 + 16 * j);
            var low = Block32Vector128.Lookup(grid, Block32Vector128.LowNibbles(bytes));
            var high = Block32Vector128.Lookup(grid, Block32Vector128.HighNibbles(bytes));
            acc += SuperBlockVector128.MulAdd32(low.AsByte(), high.AsByte(), a + 32 * j, scales + 2 * j);
        }
        return acc;
    }
}

internal readonly unsafe struct TQ2_0Vector128 : ISuperBlockVector128
{
    public static GgmlType Type => GgmlType.TQ2_0;
    public static int BlockBytes => TQ2_0Format.BlockBytes;
    public static bool HasOffset => TQ2_0Format.HasOffset;
    public static float Scales(byte* w, short* bsums, short* scales, out int offset, out float min) => TQ2_0Format.Scales(w, bsums, scales, out offset, out min);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<int> Dot(byte* w, short* a, short* scales)
    {
        var acc = Vector128<int>.Zero;
        for (var h = 0; h < 2; h++)
        {
            var q0 = Vector128.Load(w + 32 * h);
            var q1 = Vector128.Load(w + 32 * h + 16);
            for (var k = 0; k < 4; k++)
                acc += SuperBlockVector128.MulAdd32(SuperBlockVector128.Bits2(q0, 2 * k), SuperBlockVector128.Bits2(q1, 2 * k), a + 128 * h + 32 * k, scales + 8 * h + 2 * k);
        }
        return acc;
    }
}

internal readonly unsafe struct TQ1_0Vector128 : ISuperBlockVector128
{
    public static GgmlType Type => GgmlType.TQ1_0;
    public static int BlockBytes => TQ1_0Format.BlockBytes;
    public static bool HasOffset => TQ1_0Format.HasOffset;
    public static float Scales(byte* w, short* bsums, short* scales, out int offset, out float min) => TQ1_0Format.Scales(w, bsums, scales, out offset, out min);

    /// <summary>qs[32..48)·3^k mod 256 for k = 0..4, and for elements 240..255 the byte qh[i % 4]·3^(i / 4) mod 256.</summary>
    internal readonly struct Powers
    {
        public Vector128<byte> P0 { get; init; }
        public Vector128<byte> P1 { get; init; }
        public Vector128<byte> P2 { get; init; }
        public Vector128<byte> P3 { get; init; }
        public Vector128<byte> P4 { get; init; }
        public Vector128<byte> High { get; init; }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Powers TailPowers(byte* w)
    {
        var p0 = Vector128.Load(w + 32);
        var p1 = SuperBlockVector128.Times3(p0);
        var p2 = SuperBlockVector128.Times3(p1);
        var p3 = SuperBlockVector128.Times3(p2);
        var h0 = Vector128.Create(*(uint*)(w + 48)).AsByte(); // qh[i % 4] in byte i
        var h1 = SuperBlockVector128.Times3(h0);
        var h2 = SuperBlockVector128.Times3(h1);
        var h3 = SuperBlockVector128.Times3(h2);
        var high = Vector128.Create(h0.AsUInt32()[0], h1.AsUInt32()[0], h2.AsUInt32()[0], h3.AsUInt32()[0]).AsByte();
        return new Powers { P0 = p0, P1 = p1, P2 = p2, P3 = p3, P4 = SuperBlockVector128.Times3(p3), High = high };
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<int> Dot(byte* w, short* a, short* scales)
    {
        // Trit k of a byte q is the top of (q·3^k mod 256)·3: qs[0..32) give elements 32k + m, qs[32..48)
        // elements 160 + 16k + m, and trit k of qh[j] is element 240 + 4k + j.
        var acc = Vector128<int>.Zero;
        var v0 = Vector128.Load(w);
        var v1 = Vector128.Load(w + 16);
        for (var k = 0; k < 5; k++, v0 = SuperBlockVector128.Times3(v0), v1 = SuperBlockVector128.Times3(v1))
            acc += SuperBlockVector128.MulAdd32(SuperBlockVector128.Trits(v0), SuperBlockVector128.Trits(v1), a + 32 * k, scales + 2 * k);
        var tail = TailPowers(w);
        acc += SuperBlockVector128.MulAdd32(SuperBlockVector128.Trits(tail.P0), SuperBlockVector128.Trits(tail.P1), a + 160, scales + 10);
        acc += SuperBlockVector128.MulAdd32(SuperBlockVector128.Trits(tail.P2), SuperBlockVector128.Trits(tail.P3), a + 192, scales + 12);
        acc += SuperBlockVector128.MulAdd32(SuperBlockVector128.Trits(tail.P4), SuperBlockVector128.Trits(tail.High), a + 224, scales + 14);
        return acc;
    }
}

/// <summary>Where the super-block kernels find the Q8_K activation row's parts.</summary>
internal static unsafe class SuperBlockSidecar
{
    public const int Size = 256;
    private const int Q8_KBytes = 292;

    /// <summary>The standard Q8_K row, bit-identical to the reference (the reference itself below AVX-512).</summary>
    public static void QuantizeStandard(float* x, int n, byte* state, InstructionSet isa)
    {
        if (isa >= InstructionSet.Avx512)
            Q8_KKernels.QuantizeRowAvx512(x, state, n);
        else if (isa >= InstructionSet.Vector128 && Vector128.IsHardwareAccelerated)
            Q8_KKernels.QuantizeRowVector128(x, state, n);
        else
            QuantReference.QuantizeActivations(GgmlType.Q8_K, new ReadOnlySpan<float>(x, n), new Span<byte>(state, n / Size * Q8_KBytes));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static sbyte* StandardQuants(byte* state, int sb) => (sbyte*)(state + Q8_KBytes * sb + 4);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Scale(byte* state, int sb) => *(float*)(state + Q8_KBytes * sb);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static short* Sums(byte* state, int sb) => (short*)(state + Q8_KBytes * sb + 260);
}
