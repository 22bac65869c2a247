using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Lutra.Core.Quants;
using static Lutra.Core.Kernels.InterleavedSteps;

namespace Lutra.Core.Kernels;

/// <summary>
/// Q5_0 weights · Q8_0 activations over 16-row interleaved tiles (AVX-512 BW + VBMI): Q4_0's tiles with the fifth bits.
/// <para>
/// Tile block (352 bytes, 16 GGUF blocks' worth): the 16 rows' f16 d, their 32-bit qh as one 64-byte group (row r in
/// lane r), then Q4_0's four quant groups (<see cref="InterleavedSteps.TryRepackTiles"/> lays out exactly this: qh is
/// the first 4-byte group of a block). Element e of a block takes bit e of qh as its bit 4. For quant group j, one
/// <c>vpmultishiftqb</c> picks, for byte i of every lane, the 8 bits of qh starting 4 below bit 4j + i (16 + 4j + i
/// for the high nibbles), which puts that bit at bit 4; a <c>vpternlogd</c> merges it with the nibble. Codes are ≤ 31,
/// so a vpmaddubsw pair is at most 2·31·127 = 7874 and four groups sum in int16 per nibble plane; the −16 offset is
/// the seed −16·Σa from the sidecar, as Q4_0's −8. Per block the float step is the reference's, (sumi·d_w)·d_a, so
/// every output equals <see cref="QuantReference.Dot"/> bit for bit. Rows after the last whole tile keep the GGUF
/// layout and run through the reference dot product.
/// </para>
/// </summary>
public sealed unsafe class Q5_0InterleavedMatVec() : InterleavedTileMatVec(GgmlType.Q5_0, InstructionSet.Avx512, "AVX-512 VBMI 16-row interleaved")
{
    private const int BlockBytes = 22;
    private const int TileBlockBytes = TileRows * BlockBytes;
    private const int HighBitsOffset = 2 * TileRows;
    private const int QuantsOffset = HighBitsOffset + 4 * TileRows;

    public static bool IsSupported => KernelIsa.IsSupported(InstructionSet.Avx512) && Avx512Vbmi.IsSupported;

    public override int ActivationBytes(int n) => InterleavedSteps.ActivationBytes(StandardActivationBytes(n), n);

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public override void PrepareActivations(float* x, int n, byte* state) =>
        InterleavedSteps.PrepareActivations(Isa, x, n, state, StandardActivationBytes(n), -16, 1f);

    public override bool TryPrepareWeights(byte* source, long rowBytes, int rows, int n, byte* destination) =>
        TryRepackTiles(source, rowBytes, rows, n, destination, BlockBytes, 0u);

    private protected override void WholeTiles(byte* weights, long rowBytes, int tiles, byte* state, int n, float* y) =>
        Tiles(weights, rowBytes, tiles, state, state + SidecarOffset(StandardActivationBytes(n)), n / Block, y);

    private protected override void WholeTilesFourTokens(byte* weights, long rowBytes, int tiles, byte* s0, int stateStride, int n, float* y, long yStride) =>
        TilesFourTokens(weights, rowBytes, tiles, s0, stateStride, SidecarOffset(StandardActivationBytes(n)), n / Block, y, yStride);

    /// <summary>
    /// <c>vpmultishiftqb</c> controls: for byte i of each 32-bit lane (the lane's offset in its qword is 0 or 32), the
    /// bit offset 4 below bit <paramref name="first"/> + i of the lane's qh, modulo 64 (the shift rotates the qword).
    /// </summary>
    private static Vector512<byte> BitPick(int first)
    {
        Span<byte> control = stackalloc byte[8];
        for (var p = 0; p < 8; p++)
            control[p] = (byte)((32 * (p / 4) + first + p % 4 - 4) & 63);
        return Vector512.Create(BitConverter.ToUInt64(control)).AsByte();
    }

    /// <summary>The eight controls of a block: group j's low nibbles (bits 4j..) and high nibbles (bits 16 + 4j..).</summary>
    internal readonly struct BitPicks()
    {
        public readonly Vector512<byte> Low0 = BitPick(0), Low1 = BitPick(4), Low2 = BitPick(8), Low3 = BitPick(12);
        public readonly Vector512<byte> High0 = BitPick(16), High1 = BitPick(20), High2 = BitPick(24), High3 = BitPick(28);
    }

    /// <summary>A quant group's codes, nibble | qh bit · 16, for its low (elements 4j..) and high (16 + 4j..) nibbles.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static (Vector512<byte> Low, Vector512<byte> High) Codes(Vector512<byte> v, Vector512<ulong> qh, Vector512<byte> lowPick, Vector512<byte> highPick)
    {
        var nibbles = Vector512.Create((byte)0x0F);
        var fifth = Vector512.Create((byte)0x10);
        return ((v & nibbles) | (Avx512Vbmi.MultiShift(lowPick, qh) & fifth),
            (Vector512.ShiftRightLogical(v.AsUInt16(), 4).AsByte() & nibbles) | (Avx512Vbmi.MultiShift(highPick, qh) & fifth));
    }

    /// <summary>Whole tiles, one token.</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void Tiles(byte* weights, long rowBytes, int tiles, byte* state, byte* sidecar, int blocks, float* y)
    {
        var picks = new BitPicks();
        for (var tile = 0; tile < tiles; tile++)
        {
            var w = weights + tile * TileRows * rowBytes;
            var a = state + 2;
            var s = sidecar;
            var acc = Vector512<float>.Zero;
            for (var b = 0; b < blocks; b++, w += TileBlockBytes, a += ActivationBlockBytes, s += SidecarBlockBytes)
            {
                PrefetchStream(w, TileBlockBytes);
                var qh = Vector512.Load((ulong*)(w + HighBitsOffset));
                var q = w + QuantsOffset;
                var (l0, h0) = Codes(Vector512.Load(q), qh, picks.Low0, picks.High0);
                var (l1, h1) = Codes(Vector512.Load(q + 64), qh, picks.Low1, picks.High1);
                var (l2, h2) = Codes(Vector512.Load(q + 128), qh, picks.Low2, picks.High2);
                var (l3, h3) = Codes(Vector512.Load(q + 192), qh, picks.Low3, picks.High3);
                acc = Token(a, s, l0, l1, l2, l3, h0, h1, h2, h3, HalfToSingle512(w), acc);
            }
            acc.Store(y + tile * TileRows);
        }
    }

    /// <summary>acc + (sumᵢ·d_w)·d_a for one token and the 16 rows of one block, the reference's float order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Token(byte* a, byte* sidecar, Vector512<byte> l0, Vector512<byte> l1, Vector512<byte> l2, Vector512<byte> l3,
        Vector512<byte> h0, Vector512<byte> h1, Vector512<byte> h2, Vector512<byte> h3, Vector512<float> dw, Vector512<float> acc)
    {
        var sums = BlockSums(a, l0, l1, l2, l3, h0, h1, h2, h3) + Vector512.Create(*(int*)sidecar);
        return acc + Vector512.ConvertToSingle(sums) * dw * Vector512.Create(*(float*)(sidecar + 4));
    }

    /// <summary>
    /// Σ code·a of one block for 16 rows (shared with Q5_1): four vpmaddubsw pairs per nibble plane in int16 (codes ≤ 31:
    /// |Σ| ≤ 4·2·31·127 &lt; 2¹⁵), each plane widened by one vpmaddwd.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<int> BlockSums(byte* a, Vector512<byte> l0, Vector512<byte> l1, Vector512<byte> l2, Vector512<byte> l3,
        Vector512<byte> h0, Vector512<byte> h1, Vector512<byte> h2, Vector512<byte> h3)
    {
        var low = Avx512BW.MultiplyAddAdjacent(l0, Broadcast512(a)) + Avx512BW.MultiplyAddAdjacent(l1, Broadcast512(a + 4))
            + (Avx512BW.MultiplyAddAdjacent(l2, Broadcast512(a + 8)) + Avx512BW.MultiplyAddAdjacent(l3, Broadcast512(a + 12)));
        var high = Avx512BW.MultiplyAddAdjacent(h0, Broadcast512(a + 16)) + Avx512BW.MultiplyAddAdjacent(h1, Broadcast512(a + 20))
            + (Avx512BW.MultiplyAddAdjacent(h2, Broadcast512(a + 24)) + Avx512BW.MultiplyAddAdjacent(h3, Broadcast512(a + 28)));
        return Avx512BW.MultiplyAddAdjacent(low, Vector512<short>.One) + Avx512BW.MultiplyAddAdjacent(high, Vector512<short>.One);
    }

    /// <summary>GEMM tile: four tokens × 16 rows; a block's codes are built once for the four tokens.</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void TilesFourTokens(byte* weights, long rowBytes, int tiles, byte* s0, int stateStride, int sidecarOffset, int blocks, float* y, long yStride)
    {
        var picks = new BitPicks();
        var s1 = s0 + stateStride;
        var s2 = s1 + stateStride;
        var s3 = s2 + stateStride;
        for (var tile = 0; tile < tiles; tile++)
        {
            var w = weights + tile * TileRows * rowBytes;
            Vector512<float> c0 = default, c1 = default, c2 = default, c3 = default;
            for (var b = 0; b < blocks; b++, w += TileBlockBytes)
            {
                var qh = Vector512.Load((ulong*)(w + HighBitsOffset));
                var q = w + QuantsOffset;
                var (l0, h0) = Codes(Vector512.Load(q), qh, picks.Low0, picks.High0);
                var (l1, h1) = Codes(Vector512.Load(q + 64), qh, picks.Low1, picks.High1);
                var (l2, h2) = Codes(Vector512.Load(q + 128), qh, picks.Low2, picks.High2);
                var (l3, h3) = Codes(Vector512.Load(q + 192), qh, picks.Low3, picks.High3);
                var dw = HalfToSingle512(w);
                var o = b * ActivationBlockBytes + 2;
                var so = sidecarOffset + b * SidecarBlockBytes;
                c0 = Token(s0 + o, s0 + so, l0, l1, l2, l3, h0, h1, h2, h3, dw, c0);
                c1 = Token(s1 + o, s1 + so, l0, l1, l2, l3, h0, h1, h2, h3, dw, c1);
                c2 = Token(s2 + o, s2 + so, l0, l1, l2, l3, h0, h1, h2, h3, dw, c2);
                c3 = Token(s3 + o, s3 + so, l0, l1, l2, l3, h0, h1, h2, h3, dw, c3);
            }
            var yt = y + tile * TileRows;
            c0.Store(yt);
            c1.Store(yt + yStride);
            c2.Store(yt + 2 * yStride);
            c3.Store(yt + 3 * yStride);
        }
    }
}
