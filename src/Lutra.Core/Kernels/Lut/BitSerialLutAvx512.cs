using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Lutra.Core.Quants;

namespace Lutra.Core.Kernels;

/// <summary>
/// The bit-serial LUT kernel on AVX-512 BW: each 16-byte table is broadcast to the four 128-bit lanes, so one
/// <c>vpshufb</c> looks up 64 nibbles (32 rows × 2 planes) and one <c>vpmaddubsw</c> by (1, 2) or (4, 8) folds each
/// row's two planes into an int16. Q4_0/Q4_1 are table-stationary over a 128-row tile: the 8 table pairs (H, L) of a
/// weight block stay in registers while the tile's four 32-row chunks stream past (row sums accumulate in y, in L1).
/// </summary>
public sealed unsafe partial class BitSerialLutAvx512(GgmlType weightType)
    : BitSerialLutMatVec(weightType, InstructionSet.Avx512, "AVX-512 bit-serial LUT")
{
    public static bool IsSupported => Avx512BW.IsSupported && Vector512.IsHardwareAccelerated;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private protected override void FullChunks(byte* tile, int h, int chunks, byte* sidecar, int n, float* y)
    {
        switch (WeightType)
        {
            case GgmlType.Q4_0 or GgmlType.Q4_1:
                Q4Chunks(tile, h, chunks, sidecar, n / 32, y, WeightType == GgmlType.Q4_1);
                break;
            default:
                Q2_KChunk(tile, sidecar, n / 256, y);
                break;
        }
    }

    // Both kernels prefetch the weight stream InterleavedSteps.PrefetchDistance ahead, into L2: without it they read
    // 53-67 % of the probe on an Intel Xeon, with it 86-97 % (docs/kernels.md, item 13).
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void Q4Chunks(byte* tile, int h, int chunks, byte* sidecar, int blocks, float* y, bool hasMin)
    {
        var blockBytes = hasMin ? 20 : 18;
        var chunkBytes = ChunkRows * blockBytes;
        var blockStride = (long)h * blockBytes;
        for (var i = 0; i < chunks * ChunkRows; i += 16)
            Vector512<float>.Zero.Store(y + i);
        var nibble = Vector512.Create((byte)0x0F);
        var planes01 = Vector512.Create((ushort)0x0201).AsByte();
        var planes23 = Vector512.Create((ushort)0x0804).AsByte();
        var four = Vector512.Create(4f);
        for (var b = 0; b < blocks; b++, tile += blockStride, sidecar += Q4Record)
        {
            var t0 = Table(sidecar);
            var t1 = Table(sidecar + 32);
            var t2 = Table(sidecar + 64);
            var t3 = Table(sidecar + 96);
            var t4 = Table(sidecar + 128);
            var t5 = Table(sidecar + 160);
            var t6 = Table(sidecar + 192);
            var t7 = Table(sidecar + 224);
            var r0 = Table(sidecar + 16);
            var r1 = Table(sidecar + 48);
            var r2 = Table(sidecar + 80);
            var r3 = Table(sidecar + 112);
            var r4 = Table(sidecar + 144);
            var r5 = Table(sidecar + 176);
            var r6 = Table(sidecar + 208);
            var r7 = Table(sidecar + 240);
            var coefficients = (float*)(sidecar + 256);
            var a = Vector512.Create(coefficients[0]);
            var bias = Vector512.Create(coefficients[1]);
            var w = tile;
            var yc = y;
            for (var c = 0; c < chunks; c++, w += chunkBytes, yc += ChunkRows)
            {
                // One chunk is 9 (Q4_0, as a Q8_0 tile block) or 10 (Q4_1) lines; the tenth is the next chunk's first
                // for Q4_0, no harm.
                InterleavedSteps.PrefetchQ8_0TileBlock(w);
                Sse.Prefetch1(w + InterleavedSteps.PrefetchDistance + 576);
                var acc = Vector512<short>.Zero;
                var lowL = Vector512<sbyte>.Zero;
                var highL = Vector512<sbyte>.Zero;
                Lookup(w, t0, r0, nibble, planes01, planes23, ref acc, ref lowL, ref highL);
                Lookup(w + 64, t1, r1, nibble, planes01, planes23, ref acc, ref lowL, ref highL);
                Lookup(w + 128, t2, r2, nibble, planes01, planes23, ref acc, ref lowL, ref highL);
                Lookup(w + 192, t3, r3, nibble, planes01, planes23, ref acc, ref lowL, ref highL);
                Lookup(w + 256, t4, r4, nibble, planes01, planes23, ref acc, ref lowL, ref highL);
                Lookup(w + 320, t5, r5, nibble, planes01, planes23, ref acc, ref lowL, ref highL);
                Lookup(w + 384, t6, r6, nibble, planes01, planes23, ref acc, ref lowL, ref highL);
                Lookup(w + 448, t7, r7, nibble, planes01, planes23, ref acc, ref lowL, ref highL);
                // Σ 2ⁱ·L over 8 tables ≤ 15·24; the sums are exact in f32, so 4·H + L costs one FMA.
                var rest = Avx512BW.MultiplyAddAdjacent(planes01, lowL) + Avx512BW.MultiplyAddAdjacent(planes23, highL);
                var lower = Avx512F.FusedMultiplyAdd(Avx512F.FusedMultiplyAdd(ToSingle(acc.GetLower()), four, ToSingle(rest.GetLower())), a, bias);
                var upper = Avx512F.FusedMultiplyAdd(Avx512F.FusedMultiplyAdd(ToSingle(acc.GetUpper()), four, ToSingle(rest.GetUpper())), a, bias);
                var y0 = Avx512F.FusedMultiplyAdd(lower, HalfToSingle(Vector256.Load((short*)(w + 512))), Vector512.Load(yc));
                var y1 = Avx512F.FusedMultiplyAdd(upper, HalfToSingle(Vector256.Load((short*)(w + 544))), Vector512.Load(yc + 16));
                if (hasMin)
                {
                    var sum = Vector512.Create(coefficients[2]);
                    y0 = Avx512F.FusedMultiplyAdd(HalfToSingle(Vector256.Load((short*)(w + 576))), sum, y0);
                    y1 = Avx512F.FusedMultiplyAdd(HalfToSingle(Vector256.Load((short*)(w + 608))), sum, y1);
                }
                y0.Store(yc);
                y1.Store(yc + 16);
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<sbyte> Table(byte* table) => Avx512F.BroadcastVector128ToVector512((int*)table).AsSByte();

    /// <summary>
    /// 32 rows × 4 planes on one exact table (T = 4H + L): Σᵢ 2ⁱ H[indexᵢ] per row into <paramref name="acc"/>
    /// (|·| ≤ 15·127 per table) and the L lookups (0..3) of the low and high nibbles summed as bytes.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Lookup(byte* index, Vector512<sbyte> high, Vector512<sbyte> low, Vector512<byte> nibble,
        Vector512<byte> planes01, Vector512<byte> planes23, ref Vector512<short> acc, ref Vector512<sbyte> lowL, ref Vector512<sbyte> highL)
    {
        var v = Vector512.Load(index);
        var lowNibbles = (v & nibble).AsSByte();
        var highNibbles = HighNibbles(v).AsSByte();
        acc += Avx512BW.MultiplyAddAdjacent(planes01, Avx512BW.Shuffle(high, lowNibbles))
            + Avx512BW.MultiplyAddAdjacent(planes23, Avx512BW.Shuffle(high, highNibbles));
        lowL += Avx512BW.Shuffle(low, lowNibbles);
        highL += Avx512BW.Shuffle(low, highNibbles);
    }

    /// <summary>
    /// One sub-block of 32 rows: 2 index vectors on 4 exact tables (T = 4H + L, low nibbles on tables 0 and 2, high
    /// on 1 and 3): Σ T[i₀] + 2T[i₁]. H goes through <c>vpmaddubsw</c> by (4, 8); the L lookups (0..3) are summed as
    /// bytes first (≤ 12) and widened once.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<short> SubBlock(byte* index, byte* tables, Vector512<byte> nibble, Vector512<byte> planes01, Vector512<byte> planes01Times4)
    {
        var v0 = Vector512.Load(index);
        var v1 = Vector512.Load(index + 64);
        var low0 = (v0 & nibble).AsSByte();
        var high0 = HighNibbles(v0).AsSByte();
        var low1 = (v1 & nibble).AsSByte();
        var high1 = HighNibbles(v1).AsSByte();
        var main = Avx512BW.MultiplyAddAdjacent(planes01Times4, Avx512BW.Shuffle(Table(tables), low0))
            + Avx512BW.MultiplyAddAdjacent(planes01Times4, Avx512BW.Shuffle(Table(tables + 32), high0))
            + Avx512BW.MultiplyAddAdjacent(planes01Times4, Avx512BW.Shuffle(Table(tables + 64), low1))
            + Avx512BW.MultiplyAddAdjacent(planes01Times4, Avx512BW.Shuffle(Table(tables + 96), high1));
        var rest = Avx512BW.Shuffle(Table(tables + 16), low0) + Avx512BW.Shuffle(Table(tables + 48), high0)
            + Avx512BW.Shuffle(Table(tables + 80), low1) + Avx512BW.Shuffle(Table(tables + 112), high1);
        return main + Avx512BW.MultiplyAddAdjacent(planes01, rest);
    }

    /// <summary>
    /// Each byte shifted right by 4 in one instruction where GFNI exists: an affine transform whose matrix row i
    /// (byte 7 − i) selects input bit i + 4 for output bits 0-3 and nothing for 4-7.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<byte> HighNibbles(Vector512<byte> v) => Gfni.V512.IsSupported
        ? Gfni.V512.GaloisFieldAffineTransform(v, Vector512.Create(0x1020_4080_0000_0000UL).AsByte(), 0)
        : Vector512.ShiftRightLogical(v.AsUInt16(), 4).AsByte() & Vector512.Create((byte)0x0F);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> ToSingle(Vector256<short> sums) => Avx512F.ConvertToVector512Single(Avx512F.ConvertToVector512Int32(sums));

    /// <summary>
    /// Exact f16 → f32 of 16 finite halves: sign-extended and shifted left 13, the magnitude lands in the f32
    /// exponent/mantissa field scaled by 2⁻¹¹² (the mask keeps the sign and clears its copies), × 2¹¹² restores it.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> HalfToSingle(Vector256<short> half)
    {
        var bits = Vector512.ShiftLeft(Avx512F.ConvertToVector512Int32(half), 13) & Vector512.Create(unchecked((int)0x8FFF_E000));
        return bits.AsSingle() * Vector512.Create(0x7780_0000).AsSingle();
    }

    /// <summary>
    /// One 32-row Q2_K chunk: per pair of sub-blocks, the 8 tables are broadcast, each sub-block's int16 sum
    /// L + 3X (|·| ≤ 3048) is paired with the other's by a word unpack and multiplied by the pair of 4-bit scales with
    /// <c>vpmaddwd</c> into int32; the mins take the same path with (Xa, Xb). The unpack leaves rows in
    /// <see cref="BitSerialLutMatVec.Q2_KScalePosition"/> order, which the layout's d/dmin follow; one permute per
    /// chunk restores row order.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void Q2_KChunk(byte* w, byte* sidecar, int superBlocks, float* y)
    {
        var nibble = Vector512.Create((byte)0x0F);
        var planes01 = Vector512.Create((ushort)0x0201).AsByte();
        var planes01Times4 = Vector512.Create((ushort)0x0804).AsByte();
        var low4 = Vector512.Create((short)0x0F);
        var y0 = Vector512<float>.Zero;
        var y1 = Vector512<float>.Zero;
        for (var sb = 0; sb < superBlocks; sb++)
        {
            var e0 = Vector512<int>.Zero;
            var e1 = Vector512<int>.Zero;
            var c0 = Vector512<int>.Zero;
            var c1 = Vector512<int>.Zero;
            for (var p = 0; p < 8; p++, w += 320, sidecar += Q2_KPairRecord)
            {
                InterleavedSteps.PrefetchFiveLineTileBlock(w); // a pair is 320 bytes, as a Q4_1 tile block
                var sums = (short*)(sidecar + 256);
                var accA = SubBlock(w, sidecar, nibble, planes01, planes01Times4) + Vector512.Create(sums[0]);
                var accB = SubBlock(w + 128, sidecar + 128, nibble, planes01, planes01Times4) + Vector512.Create(sums[1]);
                var scales = Vector512.Load(w + 256);
                var sa = Avx512BW.ConvertToVector512Int16(scales.GetLower());
                var sbv = Avx512BW.ConvertToVector512Int16(scales.GetUpper());
                var scA = sa & low4;
                var scB = sbv & low4;
                e0 += Avx512BW.MultiplyAddAdjacent(Avx512BW.UnpackLow(accA, accB), Avx512BW.UnpackLow(scA, scB));
                e1 += Avx512BW.MultiplyAddAdjacent(Avx512BW.UnpackHigh(accA, accB), Avx512BW.UnpackHigh(scA, scB));
                var mins = Vector512.Create(*(int*)(sums + 2)).AsInt16();
                var mA = Avx512BW.ShiftRightLogical(sa, 4);
                var mB = Avx512BW.ShiftRightLogical(sbv, 4);
                c0 += Avx512BW.MultiplyAddAdjacent(Avx512BW.UnpackLow(mA, mB), mins);
                c1 += Avx512BW.MultiplyAddAdjacent(Avx512BW.UnpackHigh(mA, mB), mins);
            }
            var f = (float*)sidecar;
            var halfS = Vector512.Create(f[0]);
            var s = Vector512.Create(f[1]);
            y0 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(e0) * halfS, HalfToSingle(Vector256.Load((short*)w)), y0);
            y1 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(e1) * halfS, HalfToSingle(Vector256.Load((short*)(w + 32))), y1);
            y0 = Avx512F.FusedMultiplyAddNegated(Avx512F.ConvertToVector512Single(c0) * s, HalfToSingle(Vector256.Load((short*)(w + 64))), y0);
            y1 = Avx512F.FusedMultiplyAddNegated(Avx512F.ConvertToVector512Single(c1) * s, HalfToSingle(Vector256.Load((short*)(w + 96))), y1);
            w += 128;
            sidecar += 16;
        }
        // y0 lane L holds rows 8L..8L+3, y1 lane L rows 8L+4..8L+7.
        Avx512F.PermuteVar16x32x2(y0, Vector512.Create(0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23), y1).Store(y);
        Avx512F.PermuteVar16x32x2(y0, Vector512.Create(8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31), y1).Store(y + 16);
    }
}
