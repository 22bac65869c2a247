using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Lutra.Core.Quants;
using static Lutra.Core.Kernels.InterleavedSteps;

namespace Lutra.Core.Kernels;

/// <summary>
/// IQ4_XS weights · Q8_K activations over 16-row interleaved tiles (AVX-512 BW; see <see cref="InterleavedSteps"/>).
/// <para>
/// Tile super-block (2176 bytes, 16 GGUF super-blocks' worth, so the layout has the file's size): the 16 rows' f16 d,
/// their 16-bit scales_h, their four scales_l bytes as one 64-byte group (row r in int32 lane r), then 32 quant groups
/// of 64 bytes: group j holds qs bytes 4j..4j+3 of every row, row r in lane r. Group j belongs to sub-block j/4; its
/// low nibbles are elements 32·(j/4) + 4·(j%4) + 0..3 and its high nibbles the same plus 16.
/// </para>
/// <para>
/// A code c stands for the grid value T[c] (<see cref="IQ4NonLinear.Values"/>: negative for c &lt; 8, never zero), so
/// the bytes are signed and vpmaddubsw (unsigned × signed) takes |T[c]| from a vpshufb table and the activation
/// negated where c &lt; 8 (bit 3 of the code): a byte-masked blend of the activation's broadcast and that of its
/// negation, which the activation row carries after the Q8_K row (a blend is one uop; negating per use was two, and
/// the 4-token GEMM is bound by these uops: llama-1b pp128 at one thread 35 → 48 t/s on an Intel Xeon). |T| ≤ 127
/// and Q8_K activations lie in [−127, 127] (iscale = −127/max), so a pair is at most 2·127·127 &lt; 2¹⁵ — but two
/// pairs are not, so every vpmaddubsw output goes straight into
/// a vpmaddwd against the row's sub-block scale ls − 32 (duplicated in both int16 halves of its lane), which gives
/// (ls − 32)·Σ T·a in int32. The integer sums are the reference's, and so is the float step per super-block,
/// (d·d_a)·sumi, so every output equals <see cref="QuantReference.Dot"/> bit for bit. Rows after the last whole tile
/// keep the GGUF layout and run through the reference dot product.
/// </para>
/// </summary>
public sealed unsafe class IQ4_XSInterleavedMatVec() : InterleavedTileMatVec(GgmlType.IQ4_XS, InstructionSet.Avx512, "AVX-512 BW 16-row interleaved")
{
    private const int SuperBlock = 256;
    private const int BlockBytes = 136;
    private const int TileBlockBytes = TileRows * BlockBytes;
    private const int ScalesHighOffset = 2 * TileRows;
    private const int ScalesLowOffset = 4 * TileRows;
    private const int QuantsOffset = 8 * TileRows;
    private const int ActivationBlockBytes = 292;

    /// <summary>Into L2, 8 KiB ahead, as <see cref="Q4_KInterleavedMatVec"/> measured best for its tiles of the same kind.</summary>
    private const int PrefetchAhead = 8192;

    public static bool IsSupported => KernelIsa.IsSupported(InstructionSet.Avx512);

    /// <summary>The Q8_K row, then its n int8 values negated (64-byte aligned): the sign transfer reads both.</summary>
    public override int ActivationBytes(int n) => AlignUp(StandardActivationBytes(n)) + AlignUp(n);

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public override void PrepareActivations(float* x, int n, byte* state)
    {
        Q8_KKernels.QuantizeRowAvx512(x, state, n);
        var negated = state + AlignUp(StandardActivationBytes(n));
        for (var b = 0; b < n / SuperBlock; b++)
        {
            var qs = state + b * ActivationBlockBytes + 4;
            for (var e = 0; e < SuperBlock; e += 64)
                (Vector512<sbyte>.Zero - Vector512.Load((sbyte*)(qs + e))).Store((sbyte*)(negated + b * SuperBlock + e));
        }
    }

    /// <summary>
    /// Rewrites whole tiles into the tile layout and copies the rows after them. False, writing nothing, when the shape
    /// is not IQ4_XS's or a tile row has a non-finite d (the f16 conversion handles finite values only).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override bool TryPrepareWeights(byte* source, long rowBytes, int rows, int n, byte* destination)
    {
        if (n <= 0 || n % SuperBlock != 0 || rowBytes != (long)n / SuperBlock * BlockBytes)
            return false;
        var blocks = n / SuperBlock;
        var tiles = rows / TileRows;
        var tileBytes = TileRows * rowBytes;
        if (!FiniteScales(source, rowBytes, tiles * TileRows, blocks, BlockBytes))
            return false;
        for (var tile = 0; tile < tiles; tile++)
        {
            var dst = destination + tile * tileBytes;
            for (var r = 0; r < TileRows; r++)
            {
                var row = source + (tile * TileRows + r) * rowBytes;
                for (var b = 0; b < blocks; b++)
                {
                    var block = row + b * BlockBytes;
                    var tileBlock = dst + b * TileBlockBytes;
                    ((ushort*)tileBlock)[r] = *(ushort*)block;
                    ((ushort*)(tileBlock + ScalesHighOffset))[r] = *(ushort*)(block + 2);
                    ((uint*)(tileBlock + ScalesLowOffset))[r] = *(uint*)(block + 4);
                    for (var j = 0; j < 32; j++)
                        *(uint*)(tileBlock + QuantsOffset + QuantPosition(r, j)) = *(uint*)(block + 8 + 4 * j);
                }
            }
        }
        var tail = tiles * tileBytes;
        Buffer.MemoryCopy(source + tail, destination + tail, rows * rowBytes - tail, rows * rowBytes - tail);
        return true;
    }

    private protected override void WholeTiles(byte* weights, long rowBytes, int tiles, byte* state, int n, float* y) =>
        Tiles(weights, rowBytes, tiles, state, state + AlignUp(StandardActivationBytes(n)), n / SuperBlock, y);

    private protected override void WholeTilesFourTokens(byte* weights, long rowBytes, int tiles, byte* s0, int stateStride, int n, float* y, long yStride) =>
        TilesFourTokens(weights, rowBytes, tiles, s0, stateStride, AlignUp(StandardActivationBytes(n)), n / SuperBlock, y, yStride);

    /// <summary>Whole tiles, one token.</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void Tiles(byte* weights, long rowBytes, int tiles, byte* state, byte* negated, int blocks, float* y)
    {
        for (var tile = 0; tile < tiles; tile++)
        {
            var w = weights + tile * TileRows * rowBytes;
            var a = state;
            var acc = Vector512<float>.Zero;
            for (var b = 0; b < blocks; b++, w += TileBlockBytes, a += ActivationBlockBytes)
            {
                Sse.Prefetch1(w + PrefetchAhead);
                Sse.Prefetch1(w + PrefetchAhead + 64);
                var sumi = SuperBlockSums(w, a + 4, negated + b * SuperBlock);
                acc += HalfToSingle512(w) * Vector512.Create(*(float*)a) * Vector512.ConvertToSingle(sumi);
            }
            acc.Store(y + tile * TileRows);
        }
    }

    /// <summary>Σ_b (ls_b − 32)·Σ T[q]·a over one tile super-block, for its 16 rows (prefetching the quants ahead).</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static Vector512<int> SuperBlockSums(byte* w, byte* a, byte* na)
    {
        var magnitudes = MagnitudeTable;
        var low = Vector512.Load((uint*)(w + ScalesLowOffset));
        var high = Avx512F.ConvertToVector512UInt32(Vector256.Load((ushort*)(w + ScalesHighOffset)));
        var q = w + QuantsOffset;
        Vector512<int> even = default, odd = default;
        for (var sub = 0; sub < 8; sub++, q += 256, a += 32, na += 32)
        {
            var scale = SubBlockScale(low, high, sub);
            even += Group(q, a, na, scale, magnitudes) + Group(q + 128, a + 8, na + 8, scale, magnitudes);
            odd += Group(q + 64, a + 4, na + 4, scale, magnitudes) + Group(q + 192, a + 12, na + 12, scale, magnitudes);
        }
        return even + odd;
    }

    /// <summary>(ls − 32)·Σ T[q]·a of one quant group for 16 rows: its low nibbles against a[0..3], high against a[16..19].</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<int> Group(byte* q, byte* a, byte* na, Vector512<short> scale, Vector512<byte> magnitudes)
    {
        var v = Vector512.Load(q);
        Sse.Prefetch1(q + PrefetchAhead);
        var (low, high) = Magnitudes(v, magnitudes);
        return LowProduct(v, low, a, na, scale) + HighProduct(v, high, a + 16, na + 16, scale);
    }

    /// <summary>A quant group's low and high nibbles as |T[c]| (vpshufb).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static (Vector512<byte>, Vector512<byte>) Magnitudes(Vector512<byte> v, Vector512<byte> magnitudes)
    {
        var mask = Vector512.Create((byte)0x0F);
        return (Avx512BW.Shuffle(magnitudes, v & mask), Avx512BW.Shuffle(magnitudes, Vector512.ShiftRightLogical(v.AsUInt16(), 4).AsByte() & mask));
    }

    /// <summary>
    /// scale·Σ |T|·(±a) per int32 lane for the low nibbles of <paramref name="v"/>: the four activations at
    /// <paramref name="a"/>, or their negations at <paramref name="na"/> where c &lt; 8 (bit 3 clear).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<int> LowProduct(Vector512<byte> v, Vector512<byte> magnitude, byte* a, byte* na, Vector512<short> scale) =>
        Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(magnitude,
            Vector512.ConditionalSelect(Vector512.Equals(v & Vector512.Create((byte)0x08), Vector512<byte>.Zero).AsSByte(), Broadcast512(na), Broadcast512(a))), scale);

    /// <summary>The same for the high nibbles: a negated where c &lt; 8 (bit 7 of the byte clear).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<int> HighProduct(Vector512<byte> v, Vector512<byte> magnitude, byte* a, byte* na, Vector512<short> scale) =>
        Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(magnitude,
            Vector512.ConditionalSelect(Vector512.GreaterThanOrEqual(v.AsSByte(), Vector512<sbyte>.Zero), Broadcast512(na), Broadcast512(a))), scale);

    /// <summary>ls − 32 of sub-block <paramref name="sub"/> for 16 rows, in both int16 halves of each lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<short> SubBlockScale(Vector512<uint> low, Vector512<uint> high, int sub)
    {
        var ls = (Vector512.ShiftRightLogical(low, 4 * sub) & Vector512.Create(0xFu))
            | (Vector512.ShiftLeft(Vector512.ShiftRightLogical(high, 2 * sub) & Vector512.Create(3u), 4));
        var scale = ls - Vector512.Create(32u);
        return ((scale & Vector512.Create(0xFFFFu)) | Vector512.ShiftLeft(scale, 16)).AsInt16();
    }

    /// <summary>|T[c]| for the 16 codes, in every 128-bit lane (vpshufb looks up within lanes).</summary>
    internal static Vector512<byte> MagnitudeTable
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => Vector512.Create(Vector128.Abs(Block32Sidecar.NonLinearGrid).AsByte());
    }

    /// <summary>
    /// GEMM tile: four tokens × 16 rows; each quant group's magnitudes and sign masks are found once for the four
    /// tokens. The same integer sums and float step per token as <see cref="Tiles"/>, so the same bits.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void TilesFourTokens(byte* weights, long rowBytes, int tiles, byte* s0, int stateStride, int negatedOffset, int blocks, float* y, long yStride)
    {
        var s1 = s0 + stateStride;
        var s2 = s1 + stateStride;
        var s3 = s2 + stateStride;
        for (var tile = 0; tile < tiles; tile++)
        {
            var w = weights + tile * TileRows * rowBytes;
            Vector512<float> c0 = default, c1 = default, c2 = default, c3 = default;
            for (var b = 0; b < blocks; b++, w += TileBlockBytes)
            {
                var o = b * ActivationBlockBytes;
                var no = negatedOffset + b * SuperBlock;
                var (sumi0, sumi1, sumi2, sumi3) = FourTokenSums(w, s0 + o, s1 + o, s2 + o, s3 + o, s0 + no, s1 + no, s2 + no, s3 + no);
                var dw = HalfToSingle512(w);
                c0 += dw * Vector512.Create(*(float*)(s0 + o)) * Vector512.ConvertToSingle(sumi0);
                c1 += dw * Vector512.Create(*(float*)(s1 + o)) * Vector512.ConvertToSingle(sumi1);
                c2 += dw * Vector512.Create(*(float*)(s2 + o)) * Vector512.ConvertToSingle(sumi2);
                c3 += dw * Vector512.Create(*(float*)(s3 + o)) * Vector512.ConvertToSingle(sumi3);
            }
            var yt = y + tile * TileRows;
            c0.Store(yt);
            c1.Store(yt + yStride);
            c2.Store(yt + 2 * yStride);
            c3.Store(yt + 3 * yStride);
        }
    }

    /// <summary>
    /// <see cref="SuperBlockSums"/> of one tile super-block for four tokens (their Q8_K blocks at a0..a3, their
    /// negated values at n0..n3).
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static (Vector512<int>, Vector512<int>, Vector512<int>, Vector512<int>) FourTokenSums(byte* w, byte* a0, byte* a1, byte* a2, byte* a3,
        byte* n0, byte* n1, byte* n2, byte* n3)
    {
        var magnitudes = MagnitudeTable;
        var low = Vector512.Load((uint*)(w + ScalesLowOffset));
        var high = Avx512F.ConvertToVector512UInt32(Vector256.Load((ushort*)(w + ScalesHighOffset)));
        var q = w + QuantsOffset;
        Vector512<int> sumi0 = default, sumi1 = default, sumi2 = default, sumi3 = default;
        for (var sub = 0; sub < 8; sub++)
        {
            var scale = SubBlockScale(low, high, sub);
            for (var k = 0; k < 4; k++, q += 64)
            {
                var e = 32 * sub + 4 * k;
                var ae = e + 4;
                var v = Vector512.Load(q);
                var (lm, hm) = Magnitudes(v, magnitudes);
                sumi0 += LowProduct(v, lm, a0 + ae, n0 + e, scale) + HighProduct(v, hm, a0 + ae + 16, n0 + e + 16, scale);
                sumi1 += LowProduct(v, lm, a1 + ae, n1 + e, scale) + HighProduct(v, hm, a1 + ae + 16, n1 + e + 16, scale);
                sumi2 += LowProduct(v, lm, a2 + ae, n2 + e, scale) + HighProduct(v, hm, a2 + ae + 16, n2 + e + 16, scale);
                sumi3 += LowProduct(v, lm, a3 + ae, n3 + e, scale) + HighProduct(v, hm, a3 + ae + 16, n3 + e + 16, scale);
            }
        }
        return (sumi0, sumi1, sumi2, sumi3);
    }
}
