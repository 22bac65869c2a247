using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using Lutra.Core.Quants;

namespace Lutra.Core.Kernels;

/// <summary>
/// T-MAC bit-serial lookup-table GEMV for Q4_0, Q4_1 and Q2_K (lut-kernels.md §1.2-§1.7, §2.1). No weight is
/// dequantized: each b-bit code u = Σᵢ 2ⁱβᵢ is split into b bit planes, each bit read as sᵢ = 2βᵢ − 1 ∈ {±1}, so
/// u = ½Σᵢ 2ⁱsᵢ + (2ᵇ − 1)/2. Four activations form a group with a 16-entry table T[p] = Σₜ (bit t of p ? +qₜ : −qₜ)
/// (odd: T[15 − p] = −T[p], so 8 entries are computed). The four plane-bits of one weight group are a 4-bit index
/// into that table, so a row's sum Σⱼ Σᵢ 2ⁱ Tⱼ[indexᵢⱼ] is gathered with byte shuffles and
/// Σ u·q = ½·(sum + (2ᵇ − 1)·Σq).
/// <para>
/// The tables are built from llama.cpp's own quantized activations q (Q8_0, Q8_1, Q8_K: the standard row at the
/// start of the state), exactly: |T| ≤ 508 is stored as two int8 tables, T = 4·H + L (see
/// <see cref="BitSerialLutTables"/>), so every integer sum equals llama.cpp's and the result differs from the
/// multiply-add kernels' only by f32 rounding. T-MAC's own tables from the f32 input, int8 round(Σ±x / s) with
/// s = max group Σ|x| / 127, measured an NMSE 1.1x that of Q8_0 activations (0.07x with a residual table for planes
/// 2-3), but being a different rounding from llama.cpp's, they moved the tiny models' logits (mean |Δ| 0.107 against
/// 0.1 allowed) and the first 128-token perplexity chunk (1 % against 0.6 %) beyond the suite's tolerances.
/// </para>
/// <para>
/// Weight layout (written by <see cref="TryPrepareWeights"/>; exactly rows·rowBytes bytes): rows are cut in tiles
/// of <see cref="RowTile"/> rows (the last may be shorter) and each tile in chunks of 32 rows (the last may be
/// shorter; hc = its rows). A tile is one sequential stream. Index bytes come in 2·hc-byte vectors: byte 2r and
/// 2r + 1 belong to row r, so a multiply-add of adjacent bytes leaves one int16 per row.
/// </para>
/// <list type="bullet">
/// <item>Q4_0 / Q4_1 (tile 128 rows): per weight block of 32 (one activation block, 8 tables): per chunk, 8 index
/// vectors (vector j: byte 2r = plane 0 | plane 2 ≪ 4, byte 2r+1 = plane 1 | plane 3 ≪ 4 of row r on table j), then
/// hc f16 scales d (then hc f16 mins m for Q4_1) in row order: 18·hc (20·hc) bytes.</item>
/// <item>Q2_K (tile 32 rows, one chunk): per super-block, 8 pairs of sub-blocks (a = 2p, b = 2p+1; 8 tables): 4
/// index vectors (vector v: byte 2r = plane 0 of table 2v | plane 0 of table 2v+1 ≪ 4, byte 2r+1 the same for
/// plane 1), then the hc GGUF scale bytes (sc | m ≪ 4) of sub-block a and the hc of b; after the 8 pairs, hc f16 d
/// then hc f16 dmin, in <see cref="Q2_KScalePosition"/> order: 84·hc bytes.</item>
/// </list>
/// <para>
/// Activation sidecar (after the llama.cpp activation row, built once per input vector): Q4_0/Q4_1, per block of
/// 32: 8 × (H, L) of 16 int8 each, then f32 a = ½d, b (Q4_0: −Σq·a; Q4_1: 15Σq·a), and for Q4_1 the block's s.
/// Q2_K, per super-block: per pair 8 × (H, L), then int16 (3·Xa, 3·Xb) and (Xa, Xb) with X the sub-block's Σq;
/// then f32 ½d and d of the Q8_K block.
/// </para>
/// <para>
/// Every variant computes the same integers and the same f32 operations in the same order as
/// <see cref="BitSerialLutReference"/>, so all are bit-identical to it.
/// </para>
/// </summary>
public abstract unsafe class BitSerialLutMatVec : MatVecKernel
{
    public const int ChunkRows = 32;
    internal const int Q4Record = 272;
    internal const int Q2_KPairRecord = 272;
    internal const int Q2_KSuperBlockRecord = 8 * Q2_KPairRecord + 16;

    private protected BitSerialLutMatVec(GgmlType weightType, InstructionSet isa, string name)
        : base(weightType, isa, name)
    {
        if (!Handles(weightType))
            throw new ArgumentException($"no bit-serial LUT layout for {weightType}", nameof(weightType));
    }

    public static bool Handles(GgmlType type) => type is GgmlType.Q4_0 or GgmlType.Q4_1 or GgmlType.Q2_K;

    /// <summary>Rows per tile of <paramref name="type"/>'s layout (it depends only on the type).</summary>
    public static int TileRows(GgmlType type) => type == GgmlType.Q2_K ? ChunkRows : 4 * ChunkRows;

    public override bool RepacksWeights => true;

    public override bool UsesLookupTables => true;

    public override int RowTile => TileRows(WeightType);

    public override int ActivationBytes(int n) => AlignUp(StandardActivationBytes(n)) + AlignUp(SidecarBytes(WeightType, n));

    internal static int SidecarBytes(GgmlType type, int n) =>
        type == GgmlType.Q2_K ? n / 256 * Q2_KSuperBlockRecord : n / 32 * Q4Record;

    /// <summary>The sidecar of a prepared state.</summary>
    private protected byte* Sidecar(byte* state, int n) => state + AlignUp(StandardActivationBytes(n));

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public override void PrepareActivations(float* x, int n, byte* state)
    {
        QuantizeStandardRow(x, n, state);
        BitSerialLutTables.Build(WeightType, n, state, Sidecar(state, n), vectorized: Isa != InstructionSet.Scalar);
    }

    private void QuantizeStandardRow(float* x, int n, byte* state)
    {
        switch (ActivationType, Isa)
        {
            case (GgmlType.Q8_0, InstructionSet.Avx512):
                Q8_0Kernels.QuantizeRowAvx512(x, state, n);
                return;
            case (GgmlType.Q8_0, InstructionSet.Vector128 or InstructionSet.Avx2):
                Q8_0Kernels.QuantizeRowVector128(x, state, n);
                return;
            case (GgmlType.Q8_1, InstructionSet.Vector128 or InstructionSet.Avx2 or InstructionSet.Avx512):
                Q8_1Kernels.QuantizeRowVector128(x, state, n);
                return;
            case (GgmlType.Q8_K, InstructionSet.Avx512):
                Q8_KKernels.QuantizeRowAvx512(x, state, n);
                return;
            default:
                QuantReference.QuantizeActivations(ActivationType, new ReadOnlySpan<float>(x, n), new Span<byte>(state, StandardActivationBytes(n)));
                return;
        }
    }

    public override bool TryPrepareWeights(byte* source, long rowBytes, int rows, int n, byte* destination) =>
        BitSerialLutLayout.TryRepack(WeightType, source, rowBytes, rows, n, destination);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void MatVec(byte* weights, long rowBytes, int rows, byte* state, int n, float* y)
    {
        var sidecar = Sidecar(state, n);
        var tile = RowTile;
        for (var first = 0; first < rows; first += tile)
        {
            var h = Math.Min(tile, rows - first);
            var w = weights + first * rowBytes;
            var full = h / ChunkRows;
            if (full > 0)
                FullChunks(w, h, full, sidecar, n, y + first);
            if (h % ChunkRows != 0)
                BitSerialLutReference.Chunk(WeightType, w, h, full, sidecar, n, y + first + full * ChunkRows);
        }
    }

    /// <summary>
    /// y for the first <paramref name="chunks"/> (whole) 32-row chunks of a tile of <paramref name="h"/> rows at
    /// <paramref name="tile"/>; the rows after them, if any, are left to the reference.
    /// </summary>
    private protected abstract void FullChunks(byte* tile, int h, int chunks, byte* sidecar, int n, float* y);

    /// <summary>
    /// Where row r (0..31) of a whole Q2_K chunk keeps its d and dmin: the order in which the AVX-512 kernel's
    /// word unpack leaves the int32 row sums (rows 0-3, 8-11, 16-19, 24-27, then 4-7, 12-15, 20-23, 28-31), so
    /// the scales load straight into place. A shorter last chunk keeps row order.
    /// </summary>
    internal static int Q2_KScalePosition(int row, int chunkRows) =>
        chunkRows < ChunkRows ? row : (row % 8 < 4 ? 0 : 16) + 4 * (row / 8) + row % 4;
}

/// <summary>The plain scalar form of the bit-serial LUT kernel: the semantics every SIMD variant reproduces bit for bit.</summary>
public sealed unsafe class BitSerialLutScalar(GgmlType weightType)
    : BitSerialLutMatVec(weightType, InstructionSet.Scalar, "scalar bit-serial LUT")
{
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private protected override void FullChunks(byte* tile, int h, int chunks, byte* sidecar, int n, float* y)
    {
        for (var c = 0; c < chunks; c++)
            BitSerialLutReference.Chunk(WeightType, tile, h, c, sidecar, n, y + c * ChunkRows);
    }
}

/// <summary>
/// The activation tables, exact over llama.cpp's activation row (Q8_0, Q8_1 or Q8_K) already at the start of the
/// state: for each group of 4 quantized activations q, the integer T[p] = Σₜ (bit t of p ? +qₜ : −qₜ) (|T| ≤ 508) is
/// stored as two int8 tables, T = 4·H + L with H = T ≫ 2 and L = T &amp; 3 (H then L, 32 bytes). The kernels'
/// integer sums are therefore exactly llama.cpp's.
/// </summary>
internal static unsafe class BitSerialLutTables
{
    private const int Q8_KBytes = 292;

    /// <remarks>
    /// <paramref name="vectorized"/> builds each group's 16 entries in one Vector256 (integers: identical; the
    /// scalar kernel keeps the scalar build, so the tests compare the two).
    /// </remarks>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Build(GgmlType type, int n, byte* state, byte* sidecar, bool vectorized)
    {
        vectorized &= Vector256.IsHardwareAccelerated;
        if (type == GgmlType.Q2_K)
        {
            for (var b = 0; b < n / 256; b++, state += Q8_KBytes, sidecar += BitSerialLutMatVec.Q2_KSuperBlockRecord)
                BuildQ2_K(state, sidecar, vectorized);
            return;
        }
        // Q8_0: f16 d, 32 × int8; Q8_1: f16 d, f16 s = d·Σq, 32 × int8.
        var blockBytes = type == GgmlType.Q4_0 ? 34 : 36;
        var quants = type == GgmlType.Q4_0 ? 2 : 4;
        for (var b = 0; b < n / 32; b++, state += blockBytes, sidecar += BitSerialLutMatVec.Q4Record)
        {
            var q = (sbyte*)(state + quants);
            for (var g = 0; g < 8; g++)
                GroupTables(q + 4 * g, (sbyte*)sidecar + 32 * g, vectorized);
            var sum = 0;
            for (var i = 0; i < 32; i++)
                sum += q[i];
            // Σ u·q = (lookup sum + (2ᵇ − 1)·Σq) / 2 with u = q4 − 8 (Q4_0: −Σq) or u = q4 (Q4_1: +15·Σq).
            var a = 0.5f * HalfLookup.ToSingle(state);
            var f = (float*)(sidecar + 256);
            f[0] = a;
            f[1] = (type == GgmlType.Q4_0 ? -sum : 15 * sum) * a;
            f[2] = type == GgmlType.Q4_1 ? HalfLookup.ToSingle(state + 2) : 0;
            f[3] = 0;
        }
    }

    /// <summary>Per pair of sub-blocks: the 8 groups' tables, then int16 (3·Xa, 3·Xb) and (Xa, Xb), X = the sub-block's Σq.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void BuildQ2_K(byte* q8k, byte* record, bool vectorized)
    {
        var q = (sbyte*)(q8k + 4);
        for (var p = 0; p < 8; p++, record += BitSerialLutMatVec.Q2_KPairRecord)
        {
            for (var g = 0; g < 8; g++)
                GroupTables(q + 32 * p + 4 * g, (sbyte*)record + 32 * g, vectorized);
            int xa = 0, xb = 0;
            for (var i = 0; i < 16; i++)
            {
                xa += q[32 * p + i];
                xb += q[32 * p + 16 + i];
            }
            var sums = (short*)(record + 256);
            sums[0] = (short)(3 * xa);
            sums[1] = (short)(3 * xb);
            sums[2] = (short)xa;
            sums[3] = (short)xb;
            ((long*)(record + 264))[0] = 0;
        }
        var d = *(float*)q8k;
        var f = (float*)record;
        f[0] = 0.5f * d;
        f[1] = d;
        f[2] = f[3] = 0;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void GroupTables(sbyte* a, sbyte* tables, bool vectorized)
    {
        if (vectorized)
        {
            var t = Vector256.Create((short)a[0]) * Sign16(0) + Vector256.Create((short)a[1]) * Sign16(1)
                + Vector256.Create((short)a[2]) * Sign16(2) + Vector256.Create((short)a[3]) * Sign16(3);
            Vector256.Narrow(Vector256.ShiftRightArithmetic(t, 2), t & Vector256.Create((short)3)).Store(tables);
            return;
        }
        // Mirror symmetry: T[15 − p] = −T[p], so 8 sums are computed.
        for (var p = 0; p < 8; p++)
        {
            var t = ((p & 1) != 0 ? a[0] : -a[0]) + ((p & 2) != 0 ? a[1] : -a[1]) + ((p & 4) != 0 ? a[2] : -a[2]) - a[3];
            tables[p] = (sbyte)(t >> 2);
            tables[16 + p] = (sbyte)(t & 3);
            tables[15 - p] = (sbyte)(-t >> 2);
            tables[31 - p] = (sbyte)(-t & 3);
        }
    }

    /// <summary>±1 per table index for activation t of a group: +1 where bit t of the index is set.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<short> Sign16(int t) =>
        (Vector256.ShiftRightLogical(Vector256.Create((short)0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), t) & Vector256.Create((short)1)) * 2 - Vector256.Create((short)1);
}

/// <summary>The load-time permutation from GGUF blocks into the bit-serial layout (see <see cref="BitSerialLutMatVec"/>).</summary>
internal static unsafe class BitSerialLutLayout
{
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static bool TryRepack(GgmlType type, byte* source, long rowBytes, int rows, int n, byte* destination)
    {
        var info = QuantTypes.Get(type);
        if (n <= 0 || n % info.BlockSize != 0 || rowBytes != info.RowBytes(n) || rows <= 0)
            return false;
        var blocks = n / (int)info.BlockSize;
        var blockBytes = (int)info.BlockBytes;
        if (!ScalesAreFinite(type, source, rows, blocks, blockBytes))
            return false;
        var tileRows = BitSerialLutMatVec.TileRows(type);
        var codes = new int[info.BlockSize];
        for (var first = 0; first < rows; first += tileRows)
        {
            var h = Math.Min(tileRows, rows - first);
            var tile = destination + first * rowBytes;
            for (var r = 0; r < h; r++)
            {
                var chunk = r / BitSerialLutMatVec.ChunkRows;
                var row = r % BitSerialLutMatVec.ChunkRows;
                var hc = Math.Min(BitSerialLutMatVec.ChunkRows, h - chunk * BitSerialLutMatVec.ChunkRows);
                var src = source + (first + r) * rowBytes;
                for (var b = 0; b < blocks; b++)
                {
                    var block = src + b * blockBytes;
                    var dst = tile + (long)b * h * blockBytes + chunk * BitSerialLutMatVec.ChunkRows * blockBytes;
                    if (type == GgmlType.Q2_K)
                        PutQ2_K(block, codes, dst, row, hc);
                    else
                        PutQ4(type, block, codes, dst, row, hc);
                }
            }
        }
        return true;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static bool ScalesAreFinite(GgmlType type, byte* source, int rows, int blocks, int blockBytes)
    {
        // Offsets of the f16 fields in one GGUF block: Q4_0 d; Q4_1 d, m; Q2_K d, dmin.
        ReadOnlySpan<int> offsets = type switch
        {
            GgmlType.Q4_0 => [0],
            GgmlType.Q4_1 => [0, 2],
            _ => [80, 82],
        };
        for (long b = 0; b < (long)rows * blocks; b++)
            foreach (var offset in offsets)
                if ((*(ushort*)(source + b * blockBytes + offset) & 0x7C00) == 0x7C00)
                    return false;
        return true;
    }

    /// <summary>4-bit index of plane <paramref name="plane"/> over codes[first..first+4).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int Index(int[] codes, int first, int plane) =>
        ((codes[first] >> plane) & 1) | (((codes[first + 1] >> plane) & 1) << 1)
        | (((codes[first + 2] >> plane) & 1) << 2) | (((codes[first + 3] >> plane) & 1) << 3);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PutQ4(GgmlType type, byte* block, int[] codes, byte* dst, int row, int hc)
    {
        var qs = block + (type == GgmlType.Q4_0 ? 2 : 4);
        for (var i = 0; i < 16; i++)
        {
            codes[i] = qs[i] & 0x0F;
            codes[i + 16] = qs[i] >> 4;
        }
        for (var j = 0; j < 8; j++)
        {
            dst[j * 2 * hc + 2 * row] = (byte)(Index(codes, 4 * j, 0) | (Index(codes, 4 * j, 2) << 4));
            dst[j * 2 * hc + 2 * row + 1] = (byte)(Index(codes, 4 * j, 1) | (Index(codes, 4 * j, 3) << 4));
        }
        ((ushort*)(dst + 16 * hc))[row] = *(ushort*)block;
        if (type == GgmlType.Q4_1)
            ((ushort*)(dst + 18 * hc))[row] = *(ushort*)(block + 2);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PutQ2_K(byte* block, int[] codes, byte* dst, int row, int hc)
    {
        // GGUF Q2_K: scales[16], qs[64], d, dmin; element e = 128h + 32j + l has code qs[32h + l] >> 2j.
        var qs = block + 16;
        for (var e = 0; e < 256; e++)
            codes[e] = (qs[32 * (e / 128) + e % 32] >> (2 * (e % 128 / 32))) & 3;
        for (var p = 0; p < 8; p++)
        {
            var pair = dst + p * 10 * hc;
            for (var v = 0; v < 4; v++)
            {
                var first = 32 * p + 8 * v;
                pair[v * 2 * hc + 2 * row] = (byte)(Index(codes, first, 0) | (Index(codes, first + 4, 0) << 4));
                pair[v * 2 * hc + 2 * row + 1] = (byte)(Index(codes, first, 1) | (Index(codes, first + 4, 1) << 4));
            }
            pair[8 * hc + row] = block[2 * p];
            pair[9 * hc + row] = block[2 * p + 1];
        }
        var position = BitSerialLutMatVec.Q2_KScalePosition(row, hc);
        ((ushort*)(dst + 80 * hc))[position] = *(ushort*)(block + 80);
        ((ushort*)(dst + 82 * hc))[position] = *(ushort*)(block + 82);
    }
}

/// <summary>The scalar form of the kernel over the repacked layout (int tables, int sums, the variants' f32 order).</summary>
internal static unsafe class BitSerialLutReference
{
    /// <summary>y for the rows of chunk <paramref name="chunk"/> of the tile of <paramref name="h"/> rows at <paramref name="tile"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Chunk(GgmlType type, byte* tile, int h, int chunk, byte* sidecar, int n, float* y)
    {
        var hc = Math.Min(BitSerialLutMatVec.ChunkRows, h - chunk * BitSerialLutMatVec.ChunkRows);
        var blockBytes = (int)QuantTypes.Get(type).BlockBytes;
        var start = tile + chunk * BitSerialLutMatVec.ChunkRows * blockBytes;
        long blockStride = (long)h * blockBytes;
        for (var r = 0; r < hc; r++)
            y[r] = type == GgmlType.Q2_K ? RowQ2_K(start, blockStride, hc, r, sidecar, n) : RowQ4(type, start, blockStride, hc, r, sidecar, n);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float RowQ4(GgmlType type, byte* w, long blockStride, int hc, int r, byte* sidecar, int n)
    {
        var y = 0f;
        for (var b = 0; b < n / 32; b++, w += blockStride, sidecar += BitSerialLutMatVec.Q4Record)
        {
            var tables = (sbyte*)sidecar;
            var sum = 0;
            for (var j = 0; j < 8; j++, tables += 32)
            {
                var b0 = w[j * 2 * hc + 2 * r];
                var b1 = w[j * 2 * hc + 2 * r + 1];
                sum += T(tables, b0 & 15) + 2 * T(tables, b1 & 15) + 4 * T(tables, b0 >> 4) + 8 * T(tables, b1 >> 4);
            }
            var f = (float*)(sidecar + 256);
            var d = HalfLookup.ToSingle(w + 16 * hc + 2 * r);
            y = MathF.FusedMultiplyAdd(MathF.FusedMultiplyAdd(sum, f[0], f[1]), d, y);
            if (type == GgmlType.Q4_1)
                y = MathF.FusedMultiplyAdd(HalfLookup.ToSingle(w + 18 * hc + 2 * r), f[2], y);
        }
        return y;
    }

    /// <summary>Entry <paramref name="index"/> of a table stored as H then L: 4·H + L.</summary>
    private static int T(sbyte* table, int index) => 4 * table[index] + table[16 + index];

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float RowQ2_K(byte* w, long blockStride, int hc, int r, byte* sidecar, int n)
    {
        var y = 0f;
        for (var b = 0; b < n / 256; b++, w += blockStride, sidecar += BitSerialLutMatVec.Q2_KSuperBlockRecord)
        {
            int e = 0, c = 0;
            for (var p = 0; p < 8; p++)
            {
                var pair = w + p * 10 * hc;
                var record = sidecar + p * BitSerialLutMatVec.Q2_KPairRecord;
                var tables = (sbyte*)record;
                var sums = (short*)(record + 256);
                var sa = pair[8 * hc + r];
                var sb = pair[9 * hc + r];
                int la = 0, lb = 0;
                for (var v = 0; v < 4; v++)
                {
                    var t0 = tables + 64 * v;
                    var t1 = t0 + 32;
                    var b0 = pair[v * 2 * hc + 2 * r];
                    var b1 = pair[v * 2 * hc + 2 * r + 1];
                    var l = T(t0, b0 & 15) + 2 * T(t0, b1 & 15) + T(t1, b0 >> 4) + 2 * T(t1, b1 >> 4);
                    if (v < 2)
                        la += l;
                    else
                        lb += l;
                }
                e += (sa & 15) * (la + sums[0]) + (sb & 15) * (lb + sums[1]);
                c += (sa >> 4) * sums[2] + (sb >> 4) * sums[3];
            }
            var position = BitSerialLutMatVec.Q2_KScalePosition(r, hc);
            var d = HalfLookup.ToSingle(w + 80 * hc + 2 * position);
            var dmin = HalfLookup.ToSingle(w + 82 * hc + 2 * position);
            var f = (float*)(sidecar + 8 * BitSerialLutMatVec.Q2_KPairRecord);
            y = MathF.FusedMultiplyAdd(e * f[0], d, y);
            y = MathF.FusedMultiplyAdd(-(c * f[1]), dmin, y);
        }
        return y;
    }
}
