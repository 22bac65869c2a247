using System.Buffers.Binary;

namespace Lutra.Gguf.Tests;

internal enum GgufFieldKind
{
    Version,
    TensorCount,
    KvCount,
    KeyLength,
    ValueType,
    StringLength,
    ArrayElementType,
    ArrayCount,
    NameLength,
    DimCount,
    Dim,
    TensorType,
    TensorOffset,
}

internal readonly record struct GgufField(GgufFieldKind Kind, int Offset, int Size);

/// <summary>
/// Where each structural field of a well-formed GGUF lies, found by a walk written independently of the
/// reader, so the fuzzer can write absurd values exactly into counts, lengths, types, dims and offsets.
/// </summary>
internal static class GgufFieldMap
{
    public static (List<GgufField> Fields, int HeaderLength) Walk(byte[] b)
    {
        var fields = new List<GgufField>();
        var p = 0;
        ulong U64() { var v = BinaryPrimitives.ReadUInt64LittleEndian(b.AsSpan(p)); p += 8; return v; }
        uint U32() { var v = BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(p)); p += 4; return v; }
        void Mark(GgufFieldKind kind, int size) => fields.Add(new GgufField(kind, p, size));
        void Str(GgufFieldKind lengthKind)
        {
            Mark(lengthKind, 8);
            var length = (int)U64();
            p += length;
        }

        void Value(uint type)
        {
            switch (type)
            {
                case 0 or 1 or 7: p += 1; break;
                case 2 or 3: p += 2; break;
                case 4 or 5 or 6: p += 4; break;
                case 10 or 11 or 12: p += 8; break;
                case 8: Str(GgufFieldKind.StringLength); break;
                case 9:
                    Mark(GgufFieldKind.ArrayElementType, 4);
                    var et = U32();
                    Mark(GgufFieldKind.ArrayCount, 8);
                    var n = U64();
                    for (ulong i = 0; i < n; i++)
                        Value(et);
                    break;
                default: throw new InvalidDataException($"not a well-formed GGUF (type {type} at {p})");
            }
        }

        p = 4;
        Mark(GgufFieldKind.Version, 4);
        U32();
        Mark(GgufFieldKind.TensorCount, 8);
        var nTensors = U64();
        Mark(GgufFieldKind.KvCount, 8);
        var nKv = U64();
        for (ulong i = 0; i < nKv; i++)
        {
            Str(GgufFieldKind.KeyLength);
            Mark(GgufFieldKind.ValueType, 4);
            Value(U32());
        }
        for (ulong i = 0; i < nTensors; i++)
        {
            Str(GgufFieldKind.NameLength);
            Mark(GgufFieldKind.DimCount, 4);
            var nDims = U32();
            for (var d = 0; d < nDims; d++)
            {
                Mark(GgufFieldKind.Dim, 8);
                p += 8;
            }
            Mark(GgufFieldKind.TensorType, 4);
            p += 4;
            Mark(GgufFieldKind.TensorOffset, 8);
            p += 8;
        }
        return (fields, p);
    }
}
