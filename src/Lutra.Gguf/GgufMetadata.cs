using System.Diagnostics.CodeAnalysis;

namespace Lutra.Gguf;

/// <summary>
/// The key/value metadata of a GGUF file, in file order. Typed getters check the stored GGUF type exactly
/// (as llama.cpp's loader does): asking for a UINT32 key that holds an INT32 is an error that names both.
/// </summary>
public sealed class GgufMetadata : IReadOnlyList<KeyValuePair<string, GgufValue>>
{
    private readonly List<KeyValuePair<string, GgufValue>> _ordered = [];
    private readonly Dictionary<string, GgufValue> _byKey = new(StringComparer.Ordinal);

    public int Count => _ordered.Count;

    public KeyValuePair<string, GgufValue> this[int index] => _ordered[index];

    public IEnumerable<string> Keys => _ordered.Select(kv => kv.Key);

    /// <summary>Adds a key; returns false if it already exists.</summary>
    public bool TryAdd(string key, GgufValue value)
    {
        if (!_byKey.TryAdd(key, value))
            return false;
        _ordered.Add(new(key, value));
        return true;
    }

    /// <summary>Adds or replaces a key (replacing keeps its position).</summary>
    public void Set(string key, GgufValue value)
    {
        if (_byKey.ContainsKey(key))
        {
            var i = _ordered.FindIndex(kv => kv.Key == key);
            _ordered[i] = new(key, value);
        }
        else
        {
            _ordered.Add(new(key, value));
        }
        _byKey[key] = value;
    }

    public bool Remove(string key)
    {
        if (!_byKey.Remove(key))
            return false;
        _ordered.RemoveAt(_ordered.FindIndex(kv => kv.Key == key));
        return true;
    }

    public bool ContainsKey(string key) => _byKey.ContainsKey(key);

    public bool TryGetValue(string key, [NotNullWhen(true)] out GgufValue? value) => _byKey.TryGetValue(key, out value);

    public GgufValue? Get(string key) => _byKey.GetValueOrDefault(key);

    public string? GetString(string key) => GetTyped<GgufString>(key, GgufValueType.String)?.ToString();

    public uint? GetUInt32(string key) => GetScalar<uint>(key, GgufValueType.UInt32);

    public int? GetInt32(string key) => GetScalar<int>(key, GgufValueType.Int32);

    public float? GetFloat32(string key) => GetScalar<float>(key, GgufValueType.Float32);

    public bool? GetBool(string key) => GetScalar<bool>(key, GgufValueType.Bool);

    /// <summary>Any integer-typed value widened to long (for keys whose type varies between writers).</summary>
    public long? GetInteger(string key)
    {
        if (!_byKey.TryGetValue(key, out var v))
            return null;
        return v.Value switch
        {
            byte x => x,
            sbyte x => x,
            ushort x => x,
            short x => x,
            uint x => x,
            int x => x,
            ulong x when x <= long.MaxValue => (long)x,
            long x => x,
            _ => throw WrongType(key, v, "an integer"),
        };
    }

    /// <summary>An array value as a typed CLR array (e.g. float[] for FLOAT32 arrays).</summary>
    public T[]? GetArray<T>(string key)
    {
        if (!_byKey.TryGetValue(key, out var v))
            return null;
        if (v.Value is T[] arr)
            return arr;
        throw WrongType(key, v, $"an array of {typeof(T).Name}");
    }

    public string[]? GetStringArray(string key) =>
        GetArray<GgufString>(key)?.Select(s => s.ToString()).ToArray();

    public IEnumerator<KeyValuePair<string, GgufValue>> GetEnumerator() => _ordered.GetEnumerator();

    System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();

    private T? GetScalar<T>(string key, GgufValueType type) where T : struct
    {
        if (!_byKey.TryGetValue(key, out var v))
            return null;
        if (v.Type != type)
            throw WrongType(key, v, GgufValue.TypeNameOf(type));
        return (T)v.Value;
    }

    private T? GetTyped<T>(string key, GgufValueType type) where T : struct
    {
        if (!_byKey.TryGetValue(key, out var v))
            return null;
        if (v.Type != type)
            throw WrongType(key, v, GgufValue.TypeNameOf(type));
        return (T)v.Value;
    }

    private static GgufFormatException WrongType(string key, GgufValue v, string expected) =>
        new($"metadata key '{key}' has type {v.TypeName}, expected {expected}");
}
